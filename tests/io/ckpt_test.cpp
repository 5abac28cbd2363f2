// torch.save checkpoints: Lightning-layout files load (state dict exact, shared storages kept,
// Lightning's extra objects inert), hostile pickles are refused by the global's name without
// anything running, and what sdtrain writes torch.load(weights_only=True) reads identically.
#include <gtest/gtest.h>

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

TEST(Ckpt, WriterRoundTripsPlainValues) {
  ScratchDir dir;
  PickleValue root = PickleValue::dict();
  auto& d = root.mutable_dict();
  d.set(PickleValue::from_string("ints"), PickleValue::list({PickleValue::from_int(0), PickleValue::from_int(255),
                                                             PickleValue::from_int(256), PickleValue::from_int(65536),
                                                             PickleValue::from_int(-1), PickleValue::from_int(INT64_MIN),
                                                             PickleValue::from_int(INT64_MAX)}));
  d.set(PickleValue::from_string("f"), PickleValue::from_float(-2.5e-300));
  d.set(PickleValue::from_string("b"), PickleValue::from_bytes(std::string("\x00\x80\xff", 3)));
  d.set(PickleValue::from_string("s"), PickleValue::set({PickleValue::from_string("x")}));
  d.set(PickleValue::from_string("none"), PickleValue());
  d.set(PickleValue::from_string("yes"), PickleValue::from_bool(true));
  d.set(PickleValue::from_string("dtype"), PickleValue::global("torch.bfloat16"));
  d.set(PickleValue::from_int(5), PickleValue::tuple({}));
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
  EXPECT_EQ(back.as_dict().find("b")->as_bytes(), std::string("\x00\x80\xff", 3));
  EXPECT_EQ(back.as_dict().find("s")->items().at(0).as_string(), "x");
  EXPECT_TRUE(back.as_dict().find("none")->is_none());
  EXPECT_TRUE(back.as_dict().find("yes")->as_bool());
  EXPECT_EQ(back.as_dict().find("dtype")->global_name(), "torch.bfloat16");
  EXPECT_EQ(back.as_dict().find(PickleValue::from_int(5))->items().size(), 0u);
  // Placeholders cannot be written back; nothing is left behind.
  EXPECT_FORMAT_ERROR(save_ckpt(dir.file("bad.ckpt"), PickleValue::refused("argparse.Namespace")), "refused global 'argparse.Namespace'");
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.ckpt")));
  EXPECT_FORMAT_ERROR(save_ckpt(dir.file("v.ckpt"), root, /*overwrite=*/false), "already exists");
}

}  // namespace
}  // namespace sdtrain
