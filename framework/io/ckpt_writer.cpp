#include "framework/io/ckpt_writer.h"

#include <zlib.h>

#include <cstdio>

#include "framework/io/atomic_file.h"
#include "framework/io/pickle_writer.h"
#include "framework/io/zip_writer.h"

namespace sdtrain {

void save_ckpt(const std::string& path, const PickleValue& state, bool overwrite) {
  PickleWriter pickler(path);
  const std::string pickle = pickler.dump(state);
  AtomicFile file(path, overwrite);
  ZipWriter zip(file);
  const std::string prefix = "archive/";
  auto add_text = [&](const std::string& name, const std::string& text) { zip.add(prefix + name, text.data(), text.size()); };
  add_text("data.pkl", pickle);
  add_text(".format_version", "1");
  add_text(".storage_alignment", "64");
  add_text("byteorder", "little");
  const auto& storages = pickler.storages();
  for (std::size_t i = 0; i < storages.size(); ++i) {
    const torch::Tensor& s = storages[i];
    zip.add(prefix + "data/" + std::to_string(i), s.data_ptr(), s.nbytes());
  }
  add_text("version", "3\n");
  // torch writes a random 40-digit id; derive ours from the pickle so equal saves are equal files.
  char id[48];
  const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(pickle.data()), static_cast<uInt>(pickle.size()));
  std::snprintf(id, sizeof(id), "%040lu", static_cast<unsigned long>(crc));
  add_text(".data/serialization_id", id);
  zip.finish();
  file.commit();
}

void save_ckpt_state_dict(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                          const std::vector<std::pair<std::string, PickleValue>>& extras, bool overwrite) {
  PickleValue state_dict = PickleValue::dict();
  for (const auto& [name, t] : tensors) state_dict.mutable_dict().set(PickleValue::from_string(name), PickleValue::from_tensor(t));
  PickleValue root = PickleValue::dict();
  for (const auto& [name, v] : extras) root.mutable_dict().set(PickleValue::from_string(name), v);
  root.mutable_dict().set(PickleValue::from_string("state_dict"), state_dict);
  save_ckpt(path, root, overwrite);
}

}  // namespace sdtrain
