# `cmake --install` lays out the public headers, libraries, tools and a package config so that external
# plugins build with find_package(sdtrain) (see examples/).
include(CMakePackageConfigHelpers)
install(TARGETS sdtrain sdtrain_proto sdtrain_plugin_options sdtrain_plugins EXPORT sdtrainTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# Only the public plugin API is installed: a plugin that includes an internal header does not
# build against an install, so internals can change without breaking plugins.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/sdtrain DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(FILES ${PROJECT_BINARY_DIR}/include/sdtrain/version.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sdtrain)
install(EXPORT sdtrainTargets NAMESPACE sdtrain:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sdtrain)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/sdtrainConfig.cmake.in
  ${PROJECT_BINARY_DIR}/sdtrainConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sdtrain)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/sdtrainConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/sdtrainConfig.cmake ${PROJECT_BINARY_DIR}/sdtrainConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sdtrain)
