target_sources(sdtrain_plugins PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/sd_encoder_cache.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sd_export.cpp
  ${CMAKE_CURRENT_LIST_DIR}/sd_pipeline.cpp
  ${CMAKE_CURRENT_LIST_DIR}/stable_diffusion_model.cpp
  ${CMAKE_CURRENT_LIST_DIR}/txt2img.cpp)
