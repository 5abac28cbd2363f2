// torch.save checkpoints: Lightning-layout files load (state dict exact, shared storages kept,
// Lightning's extra objects inert), hostile pickles are refused by the global's name without
// anything running, and what sdtrain writes (through LibTorch's pickler and zip writer)
// torch.load(weights_only=True) reads identically, atomically even when a write fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "framework/io/ckpt.h"
#include "framework/io/safetensors.h"
#include "sdtrain/errors.h"
#include "tests/io/io_test_util.h"

namespace sdtrain {
namespace {

using testing::fixture;
using testing::ScratchDir;

void expect_matches_reference(const std::vector<std::pair<std::string, torch::Tensor>>& got) {
  SafetensorsReader want(fixture("lightning_state_dict.safetensors"));
  ASSERT_EQ(got.size(), want.size());
  std::vector<std::string> names;
  for (const auto& [name, t] : got) {
    SCOPED_TRACE(name);
    names.push_back(name);
    torch::Tensor w = want.tensor(name);
    EXPECT_EQ(t.scalar_type(), w.scalar_type());
    EXPECT_EQ(t.sizes(), w.sizes());
    EXPECT_TRUE(torch::equal(t, w));
  }
}

TEST(Ckpt, LightningStateDictLoadsExactly) {
  std::vector<std::string> tolerated;
  const auto sd = load_ckpt_state_dict(fixture("lightning.ckpt"), "state_dict", &tolerated);
  expect_matches_reference(sd);
  // Pickle order is the state dict's insertion order.
  EXPECT_EQ(sd.front().first, "model.diffusion_model.w");
  EXPECT_EQ(sd.back().first, "model.param");
  // The ModelCheckpoint class key, argparse.Namespace and pathlib path became inert placeholders.
  EXPECT_NE(std::find(tolerated.begin(), tolerated.end(), "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
            tolerated.end());
  EXPECT_NE(std::find(tolerated.begin(), tolerated.end(), "argparse.Namespace"), tolerated.end());
  EXPECT_NE(std::find(tolerated.begin(), tolerated.end(), "pathlib.PosixPath"), tolerated.end());
}

TEST(Ckpt, DeflatedEntriesLoadAsTorchLoadReadsThem) {
  expect_matches_reference(load_ckpt_state_dict(fixture("lightning_deflated.ckpt"), "state_dict", nullptr));
}

// Each entry's header claims what its bytes cannot hold; refused when the archive is opened,
// before anything the size implies is allocated (an encrypted entry declaring 4 GB was inflated
// into a buffer of that size, found by the ckpt fuzzer).
TEST(Ckpt, EntriesThatCannotHoldWhatTheyDeclareAreRefused) {
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("forged_deflate_bomb.ckpt")), "forged_deflate_bomb.ckpt",
                      "zip entry 'lightning/data/0' declares 4294901762 bytes from 101 deflated, more than deflate can produce");
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("forged_encrypted.ckpt")), "zip entry 'lightning/data/0' is encrypted");
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("forged_stored_sizes.ckpt")), "forged_stored_sizes.ckpt",
                      "not a valid zip archive: Zip archive inconsistent");  // libzip's check
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("forged_bzip2.ckpt")),
                      "zip entry 'lightning/data/0' uses compression method 12; torch.save files are stored or deflated");
}

TEST(Ckpt, SharedStoragesStayShared) {
  const auto sd = load_ckpt_state_dict(fixture("lightning.ckpt"));
  std::map<std::string, torch::Tensor> m(sd.begin(), sd.end());
  torch::Tensor w = m.at("model.diffusion_model.w");
  const torch::Tensor& wt = m.at("model.diffusion_model.w_t");
  const torch::Tensor& ema = m.at("model_ema.diffusion_modelw");
  EXPECT_TRUE(w.is_alias_of(wt));
  EXPECT_TRUE(w.is_alias_of(ema));
  EXPECT_EQ(ema.storage_offset(), 2 * 4);
  EXPECT_EQ(wt.strides(), (std::vector<int64_t>{1, 4}));
  // One storage, mapped once: a write through one view shows through the others.
  w.index_put_({2, 0}, 100.0f);
  EXPECT_EQ(ema.index({0, 0}).item<float>(), 100.0f);
  EXPECT_EQ(wt.index({0, 2}).item<float>(), 100.0f);
}

TEST(Ckpt, FullContentsWithPlainValuesAndPlaceholders) {
  CkptLoadOptions options;
  options.policy = GlobalPolicy::kTolerateKnownData;
  const CkptContents c = load_ckpt(fixture("lightning.ckpt"), options);
  const PickleDict& root = c.root.as_dict();
  EXPECT_EQ(root.find("epoch")->as_int(), 3);
  EXPECT_EQ(root.find("global_step")->as_int(), 1234);
  EXPECT_EQ(root.find("big")->as_int(), int64_t{1} << 40);
  EXPECT_EQ(root.find("neg")->as_int(), -5);
  EXPECT_EQ(root.find("ratio")->as_float(), 0.75);
  EXPECT_EQ(root.find("pytorch-lightning_version")->as_string(), "1.4.2");
  EXPECT_EQ(root.find("blob")->as_bytes(), std::string("\x00\x01\xfe\xff", 4));
  const PickleDict& hp = root.find("hyper_parameters")->as_dict();
  EXPECT_EQ(hp.find("name")->as_string(), "sd");
  EXPECT_EQ(hp.find("betas")->items().at(1).as_float(), 0.999);
  EXPECT_EQ(hp.find("tags")->kind(), PickleValue::Kind::kSet);
  EXPECT_EQ(hp.find("tags")->items().size(), 2u);
  const PickleValue& args = *hp.find("args");
  ASSERT_TRUE(args.is_refused());
  EXPECT_EQ(args.global_name(), "argparse.Namespace");
  EXPECT_TRUE(args.refused_called());
  // Its attributes are kept as inert data; the pathlib object inside is itself a placeholder.
  EXPECT_EQ(args.refused_state().as_dict().find("lr")->as_float(), 1e-4);
  EXPECT_EQ(args.refused_state().as_dict().find("root")->global_name(), "pathlib.PosixPath");
  EXPECT_FORMAT_ERROR(args.as_dict(), "refused global 'argparse.Namespace'");
  // callbacks is keyed by the ModelCheckpoint class object.
  const auto& cb = root.find("callbacks")->as_dict().items().at(0);
  EXPECT_EQ(cb.first.global_name(), "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint");
  EXPECT_FALSE(cb.first.refused_called());
  EXPECT_EQ(cb.second.as_dict().find("best_model_score")->as_tensor().item<float>(), 0.25f);
  const auto& opt = root.find("optimizer_states")->items().at(0).as_dict();
  EXPECT_EQ(opt.find("param_groups")->items().at(0).as_dict().find("lr")->as_float(), 0.1);
  EXPECT_EQ(opt.find("state")->as_dict().find(PickleValue::from_int(0))->as_dict().find("step")->as_tensor().item<float>(), 3.0f);
}

TEST(Ckpt, StrictLoadRefusesLightningExtrasByName) {
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("lightning.ckpt")), "lightning.ckpt:",
                      "refused global 'pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint'");
}

TEST(Ckpt, PlainTorchSaveOfAStateDict) {
  expect_matches_reference(load_ckpt_state_dict(fixture("plain_state_dict.pt")));
  // Strict mode suffices for a plain state dict.
  const CkptContents c = load_ckpt(fixture("plain_state_dict.pt"));
  EXPECT_EQ(c.root.as_dict().size(), 12u);
  EXPECT_TRUE(c.tolerated_globals.empty());
}

TEST(Ckpt, UnknownUserClassIsRefusedEvenOutsideTheStateDict) {
  EXPECT_FORMAT_ERROR(load_ckpt_state_dict(fixture("custom_class.ckpt")), "custom_class.ckpt",
                      "refused global '__main__.MyConfig'");
  // A caller that knows the class is data can tolerate it explicitly.
  CkptLoadOptions options;
  options.policy = GlobalPolicy::kTolerateKnownData;
  options.tolerated = {"__main__.MyConfig"};
  const CkptContents c = load_ckpt(fixture("custom_class.ckpt"), options);
  EXPECT_EQ(c.tolerated_globals, std::vector<std::string>{"__main__.MyConfig"});
}

struct Hostile {
  const char* file;
  const char* global;
  const char* marker;
};

class HostileCkpt : public ::testing::TestWithParam<Hostile> {};

TEST_P(HostileCkpt, RefusedByNameAndNothingRuns) {
  const Hostile h = GetParam();
  const std::string path = fixture(h.file);
  // The message may add the Python 3 name after a Python 2 one: "refused global 'posix.system (os.system)'".
  EXPECT_FORMAT_ERROR(load_ckpt(path), path, std::string("refused global '") + h.global, "nothing in the file is executed");
  EXPECT_FORMAT_ERROR(load_ckpt_state_dict(path), path, std::string("refused global '") + h.global);
  CkptLoadOptions lenient;
  lenient.policy = GlobalPolicy::kTolerateKnownData;
  EXPECT_FORMAT_ERROR(load_ckpt(path, lenient), std::string("refused global '") + h.global);
  EXPECT_FALSE(std::filesystem::exists(fixture(h.marker))) << "the payload ran";
}

INSTANTIATE_TEST_SUITE_P(
    Payloads, HostileCkpt,
    ::testing::Values(Hostile{"evil_os_system.ckpt", "posix.system (os.system)", "marker_os_system"},
                      Hostile{"evil_eval.ckpt", "__builtin__.eval (builtins.eval)", "marker_eval"},
                      Hostile{"evil_popen.ckpt", "commands.Popen (subprocess.Popen)", "marker_popen"},
                      Hostile{"evil_in_state_dict.ckpt", "posix.system", "marker_in_sd"},
                      Hostile{"evil_proto4.ckpt", "posix.system", "marker_proto4"},
                      Hostile{"evil_proto0.ckpt", "os.system", "marker_proto0"}));

TEST(Ckpt, NotACheckpoint) {
  EXPECT_FORMAT_ERROR(load_ckpt(fixture("all_dtypes.safetensors")), "all_dtypes.safetensors", "not a zip archive");
  ScratchDir dir;
  testing::write_bytes(dir.file("trunc.ckpt"), testing::read_bytes(fixture("lightning.ckpt")).substr(0, 300));
  EXPECT_FORMAT_ERROR(load_ckpt(dir.file("trunc.ckpt")), "trunc.ckpt");
}

TEST(Ckpt, WrittenCheckpointIsReadIdenticallyByTorchLoadWeightsOnly) {
  ScratchDir dir;
  SafetensorsReader reference(fixture("lightning_state_dict.safetensors"));
  // Re-create the shared views so the writer must store one storage for three tensors.
  auto tensors = reference.tensors();
  const torch::Tensor base = reference.tensor("model.diffusion_model.w").clone();
  size_t w_index = 0, ema_index = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].first == "model.diffusion_model.w") tensors[i].second = base, w_index = i;
    if (tensors[i].first == "model.diffusion_model.w_t") tensors[i].second = base.t();
    if (tensors[i].first == "model_ema.diffusion_modelw") tensors[i].second = base.narrow(0, 2, 3), ema_index = i;
  }
  const std::string path = dir.file("out.ckpt");
  save_ckpt_state_dict(path, tensors,
                       {{"global_step", PickleValue::from_int(7)},
                        {"expect_shared", PickleValue::tuple({PickleValue::from_string(tensors[w_index].first),
                                                              PickleValue::from_string(tensors[ema_index].first)})}});
  std::string log;
  EXPECT_EQ(testing::run_python_check("--compare-ckpt '" + path + "' '" + fixture("lightning_state_dict.safetensors") +
                                          "' --extras-json '{\"global_step\": 7}'", log), 0) << log;
  // And by ourselves, strictly, with the views still sharing one storage.
  const auto back = load_ckpt_state_dict(path);
  expect_matches_reference(back);
  EXPECT_TRUE(back[w_index].second.is_alias_of(back[ema_index].second));
  const CkptContents c = load_ckpt(path);
  EXPECT_EQ(c.root.as_dict().find("global_step")->as_int(), 7);
  // 64-byte aligned data, so tensors view the file in place.
  for (const auto& [name, t] : back) {
    if (t.storage_offset() == 0 && t.numel() > 0) { EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % 64, 0u) << name; }
  }
}

PickleValue str(const std::string& s) { return PickleValue::from_string(s); }
PickleValue num(std::int64_t v) { return PickleValue::from_int(v); }

TEST(Ckpt, WriterRoundTripsPlainValues) {
  ScratchDir dir;
  PickleValue root = PickleValue::dict();
  auto& d = root.mutable_dict();
  d.set(str("ints"), PickleValue::list({num(0), num(255), num(256), num(65536), num(-1), num(INT64_MIN), num(INT64_MAX)}));
  d.set(str("f"), PickleValue::from_float(-2.5e-300));
  d.set(str("none"), PickleValue());
  d.set(str("yes"), PickleValue::from_bool(true));
  d.set(num(5), PickleValue::tuple({}));
  save_ckpt(dir.file("v.ckpt"), root);
  const PickleValue back = load_ckpt(dir.file("v.ckpt")).root;
  const auto& ints = back.as_dict().find("ints")->items();
  ASSERT_EQ(ints.size(), 7u);
  EXPECT_EQ(ints[2].as_int(), 256);
  EXPECT_EQ(ints[3].as_int(), 65536);
  EXPECT_EQ(ints[4].as_int(), -1);
  EXPECT_EQ(ints[5].as_int(), INT64_MIN);
  EXPECT_EQ(ints[6].as_int(), INT64_MAX);
  EXPECT_EQ(back.as_dict().find("f")->as_float(), -2.5e-300);
  EXPECT_TRUE(back.as_dict().find("none")->is_none());
  EXPECT_EQ(back.as_dict().find("yes")->kind(), PickleValue::Kind::kBool);
  EXPECT_TRUE(back.as_dict().find("yes")->as_bool());
  EXPECT_EQ(back.as_dict().find(num(5))->kind(), PickleValue::Kind::kTuple);
  EXPECT_EQ(back.as_dict().find(num(5))->items().size(), 0u);
  // Insertion order survives (Python dicts keep it, and so does the pickle).
  const auto& items = back.as_dict().items();
  ASSERT_EQ(items.size(), 5u);
  EXPECT_EQ(items[0].first.as_string(), "ints");
  EXPECT_EQ(items[4].first.as_int(), 5);
  EXPECT_FORMAT_ERROR(save_ckpt(dir.file("v.ckpt"), root, /*overwrite=*/false), "v.ckpt", "already exists");
}

TEST(Ckpt, ValuesLibTorchCannotPickleAreRefusedBeforeAnyFileExists) {
  ScratchDir dir;
  const std::string path = dir.file("bad.ckpt");
  auto in_dict = [](PickleValue v) {
    PickleValue root = PickleValue::dict();
    root.mutable_dict().set(PickleValue::from_string("x"), std::move(v));
    return root;
  };
  EXPECT_FORMAT_ERROR(save_ckpt(path, PickleValue::refused("argparse.Namespace")), path,
                      "refused global 'argparse.Namespace'");
  EXPECT_FORMAT_ERROR(save_ckpt(path, in_dict(PickleValue::set({num(1)}))), path, "no sets, bytes or bare globals");
  EXPECT_FORMAT_ERROR(save_ckpt(path, in_dict(PickleValue::from_bytes("ab"))), path, "no sets, bytes or bare globals");
  EXPECT_FORMAT_ERROR(save_ckpt(path, in_dict(PickleValue::global("torch.bfloat16"))), path,
                      "no sets, bytes or bare globals");
  PickleValue tuple_key = PickleValue::dict();
  tuple_key.mutable_dict().set(PickleValue::tuple({num(1)}), num(2));
  EXPECT_FORMAT_ERROR(save_ckpt(path, tuple_key), path, "dict key", "bool, int, float or str");
  EXPECT_FORMAT_ERROR(save_ckpt_state_dict(path, {{"f8", torch::zeros({2}).to(torch::kFloat8_e4m3fn)}}), path,
                      "has no torch storage type");
  const torch::Tensor bytes = torch::zeros({8}, torch::kUInt8);
  EXPECT_FORMAT_ERROR(save_ckpt_state_dict(path, {{"a", bytes}, {"b", bytes.view(torch::kInt32)}}), path,
                      "different dtypes");
  PickleValue deep = PickleValue::list();
  PickleValue cursor = deep;
  for (int i = 0; i < 1100; ++i) {
    PickleValue inner = PickleValue::list();
    cursor.mutable_items().push_back(inner);
    cursor = inner;
  }
  EXPECT_FORMAT_ERROR(save_ckpt(path, deep), path, "nested deeper than 1000");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(Ckpt, WrittenValuesAreReadIdenticallyByTorchLoadWeightsOnly) {
  ScratchDir dir;
  SafetensorsReader all_dtypes(fixture("all_dtypes.safetensors"));
  // Keep in step with expected_ckpt_values() in make_io_fixtures.py.
  PickleValue root = PickleValue::dict();
  auto& d = root.mutable_dict();
  d.set(str("ints"), PickleValue::list({num(0), num(255), num(256), num(65535), num(65536), num(-1), num(-129),
                                        num(INT32_MAX), num(INT32_MIN), num(INT64_MIN), num(INT64_MAX)}));
  std::vector<PickleValue> floats;
  for (double f : {0.0, -0.0, -2.5e-300, 0.1, 1e300, std::numeric_limits<double>::infinity()}) {
    floats.push_back(PickleValue::from_float(f));
  }
  d.set(str("floats"), PickleValue::list(floats));
  d.set(str("text"), str("gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93"));
  d.set(str("empty"), str(""));
  d.set(str("none"), PickleValue());
  d.set(str("flags"), PickleValue::tuple({PickleValue::from_bool(true), PickleValue::from_bool(false)}));
  PickleValue nested = PickleValue::dict();
  nested.mutable_dict().set(str("list"), PickleValue::list({num(1), PickleValue::list({num(2), PickleValue::tuple({num(3), PickleValue()})})}));
  nested.mutable_dict().set(num(5), str("five"));
  nested.mutable_dict().set(PickleValue::from_float(2.5), str("two and a half"));
  nested.mutable_dict().set(PickleValue::from_bool(true), str("yes"));
  d.set(str("nested"), nested);
  d.set(str("tuple"), PickleValue::tuple());
  PickleValue tensors = PickleValue::dict();
  torch::Tensor f64, f32;
  for (const char* name : {"f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool", "empty", "scalar"}) {
    torch::Tensor t = all_dtypes.tensor(name).clone();
    if (std::string(name) == "f64") f64 = t;
    if (std::string(name) == "f32") f32 = t;
    tensors.mutable_dict().set(str(name), PickleValue::from_tensor(t));
  }
  d.set(str("tensors"), tensors);
  PickleValue views = PickleValue::dict();
  views.mutable_dict().set(str("f64_row"), PickleValue::from_tensor(f64[1]));  // shares f64's storage
  views.mutable_dict().set(str("f32_t"), PickleValue::from_tensor(f32.transpose(0, 2)));
  d.set(str("views"), views);
  const std::string path = dir.file("values.ckpt");
  save_ckpt(path, root);

  std::string log;
  EXPECT_EQ(testing::run_python_check("--compare-ckpt-values '" + path + "' '" + fixture("all_dtypes.safetensors") + "'",
                                      log), 0) << log;
  // The restricted reader reads the same file strictly.
  const CkptContents back = load_ckpt(path);
  const PickleDict& r = back.root.as_dict();
  EXPECT_EQ(r.find("ints")->items().at(9).as_int(), INT64_MIN);
  EXPECT_TRUE(std::signbit(r.find("floats")->items().at(1).as_float()));
  EXPECT_EQ(r.find("text")->as_string(), d.find("text")->as_string());
  EXPECT_EQ(r.find("nested")->as_dict().find(PickleValue::from_float(2.5))->as_string(), "two and a half");
  for (const auto& [name, t] : tensors.as_dict().items()) {
    SCOPED_TRACE(name.as_string());
    const torch::Tensor& got = r.find("tensors")->as_dict().find(name)->as_tensor();
    EXPECT_EQ(got.scalar_type(), t.as_tensor().scalar_type());
    EXPECT_TRUE(torch::equal(got, t.as_tensor()));
  }
  const torch::Tensor& row = r.find("views")->as_dict().find("f64_row")->as_tensor();
  EXPECT_TRUE(row.is_alias_of(r.find("tensors")->as_dict().find("f64")->as_tensor()));
  EXPECT_TRUE(torch::equal(row, f64[1]));
  EXPECT_EQ(r.find("views")->as_dict().find("f32_t")->as_tensor().strides(), f32.transpose(0, 2).strides());
}

/// Lowers this process's file-size limit for its lifetime, so write(2) fails with EFBIG past it.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;  // EFBIG instead of death by SIGXFSZ
    ::sigaction(SIGXFSZ, &ignore, &previous_signal_);
    ::getrlimit(RLIMIT_FSIZE, &previous_);
    rlimit lowered = previous_;
    lowered.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &lowered);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &previous_);
    ::sigaction(SIGXFSZ, &previous_signal_, nullptr);
  }

 private:
  rlimit previous_{};
  struct sigaction previous_signal_ {};
};

TEST(Ckpt, AWriteThatFailsHalfwayLeavesTheOldFileAndNoTemporary) {
  ScratchDir dir;
  const std::string path = dir.file("model.ckpt");
  save_ckpt_state_dict(path, {{"w", torch::full({4}, 7.0f)}});
  const std::string before = testing::read_bytes(path);
  {
    // 16 MiB of data against a 1 MiB limit: the failure happens inside LibTorch's zip writer.
    FileSizeLimit limit(1 << 20);
    EXPECT_FORMAT_ERROR(save_ckpt_state_dict(path, {{"w", torch::ones({4 << 20})}}), path, "write failed");
  }
  EXPECT_EQ(testing::read_bytes(path), before);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) names.push_back(entry.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"model.ckpt"});
  EXPECT_TRUE(torch::equal(load_ckpt_state_dict(path).at(0).second, torch::full({4}, 7.0f)));
}

}  // namespace
}  // namespace sdtrain
