// A sweep of bad input over every command-line tool (sdtrain, sdsample, sdconvert, sddata,
// sddemodata): flags of the wrong type or out of range, missing and unreadable files, output
// folders that cannot be written, and a full disk while a checkpoint is written. Each must end
// with its documented exit code and one message naming the flag, field or file and what was
// expected, before any work (no crash, no stack trace, no protobuf log line, nothing written).
#include <gtest/gtest.h>

#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "tests/common/test_env.h"

namespace sdtrain {
namespace {
namespace fs = std::filesystem;

/// One row: a tool's arguments, with {dir} (a scratch folder holding `afile`, an empty file, and
/// `adir`, an empty folder) and {cfg} (a runnable sdtrain config of the test plugins in {dir})
/// replaced; the exit code and a part of the message it must print; a path (under {dir}) that must
/// not exist afterwards, when the tool was asked to write one.
struct BadInput {
  const char* name;
  const char* tool;
  const char* args;
  int exit_code;
  const char* message;
  const char* not_written = "";
};

/// gtest prints a row by its name (ctest lists every row by it, not by its bytes).
void PrintTo(const BadInput& row, std::ostream* out) { *out << row.name; }

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
    text.replace(at, from.size(), to);
  }
  return text;
}

/// The scratch folder of the running test with afile, adir and the config {cfg}.
fs::path prepare_scratch() {
  const fs::path dir = test::scratch_dir();
  test::write_text(dir / "afile", "");
  fs::create_directories(dir / "adir");
  test::write_text(dir / "cfg.pbtxt", "plugin_libraries: \"" + test::library("sdtrain_test_plugins").string() +
                                          "\"\nrun { max_steps: 4 checkpoint_every_n_steps: 2 output_dir: \"out\" }\n"
                                          "model { type: \"test_tiny_denoiser\" }\n"
                                          "data { train { type: \"test_colors\" } batch_size: 2 }\n");
  return dir;
}

std::string expand(const std::string& text, const fs::path& dir) {
  return replace_all(replace_all(text, "{cfg}", (dir / "cfg.pbtxt").string()), "{dir}", dir.string());
}

class BadInputSweep : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputSweep, EndsWithItsCodeAndAMessageNamingTheCause) {
  const BadInput& row = GetParam();
  const fs::path dir = prepare_scratch();
  const std::string command = (test::binary_dir() / "bin" / row.tool).string() + " " + expand(row.args, dir);
  std::string output;
  EXPECT_EQ(test::run_command("cd " + dir.string() + " && " + command, &output), row.exit_code) << command << "\n"
                                                                                                  << output;
  EXPECT_NE(output.find(expand(row.message, dir)), std::string::npos) << command << "\n" << output;
  for (const char* noise : {"terminate called", "Aborted", "core dumped", "Segmentation", "libprotobuf", "what():"}) {
    EXPECT_EQ(output.find(noise), std::string::npos) << noise << " in the output of " << command << "\n" << output;
  }
  if (*row.not_written != '\0') {
    EXPECT_FALSE(fs::exists(expand(row.not_written, dir))) << row.not_written << " was written by " << command;
  }
  EXPECT_FALSE(fs::exists(dir / "out")) << "sdtrain started a run: " << command;
}

const BadInput kRows[] = {
    // sdtrain: the config, its overrides, plugins, resume, the output folder, the flags.
    {"sdtrain_config_is_a_folder", "sdtrain", "--config {dir}/adir", 2, "config error: {dir}/adir: cannot read: Is a directory"},
    {"sdtrain_config_missing", "sdtrain", "--config {dir}/missing.pbtxt", 2, "{dir}/missing.pbtxt: config file not found"},
    {"sdtrain_plugin_missing", "sdtrain", "--config {cfg} --plugin {dir}/missing.so", 2,
     "plugin error: plugin library not found: {dir}/missing.so"},
    {"sdtrain_plugin_not_a_library", "sdtrain", "--config {cfg} --plugin {dir}/afile", 2,
     "plugin error: cannot load plugin library {dir}/afile"},
    {"sdtrain_resume_missing", "sdtrain", "--config {cfg} --resume {dir}/missing", 2,
     "run.resume: checkpoint directory not found: {dir}/missing"},
    {"sdtrain_resume_not_a_checkpoint", "sdtrain", "--config {cfg} --resume {dir}/adir", 2,
     "run.resume: {dir}/adir is not a complete checkpoint (no manifest.json)"},
    {"sdtrain_output_dir_under_a_file", "sdtrain", "--config {cfg} --set run.output_dir={dir}/afile/out", 2,
     "config error: run.output_dir: cannot create {dir}/afile/out/logs: Not a directory"},
    {"sdtrain_set_without_value", "sdtrain", "--config {cfg} --set run.max_steps", 2,
     "--set run.max_steps: expected path.to.field=value"},
    {"sdtrain_set_unknown_field", "sdtrain", "--config {cfg} --set run.max_step=3", 2,
     "--set run.max_step: sdtrain.RunConfig has no field 'max_step'"},
    {"sdtrain_set_wrong_enum", "sdtrain", "--config {cfg} --set precision=FP8", 2,
     "--set precision: sdtrain.TrainConfig.precision expects one of FP32|BF16|FP16, got 'FP8'"},
    {"sdtrain_set_batch_size_zero", "sdtrain", "--config {cfg} --set data.batch_size=0", 2,
     "data.batch_size: must be > 0, got 0"},
    {"sdtrain_set_learning_rate_nan", "sdtrain", "--config {cfg} --set optimizer.base_learning_rate=nan", 2,
     "optimizer.base_learning_rate: must be > 0"},
    {"sdtrain_set_ema_decay_above_one", "sdtrain", "--config {cfg} --set ema.decay=1.5", 2, "ema.decay: must be in [0, 1]"},
    {"sdtrain_set_negative_workers", "sdtrain", "--config {cfg} --set data.num_workers=-1", 2,
     "data.num_workers: must be >= 0"},
    {"sdtrain_world_size_not_a_number", "sdtrain", "--config {cfg} --dry-run-data --world-size two", 2,
     "the argument ('two') for option '--world-size' is invalid"},
    {"sdtrain_world_size_zero", "sdtrain", "--config {cfg} --dry-run-data --world-size 0", 2,
     "--world-size: must be at least 1, got 0"},
    {"sdtrain_world_size_without_dry_run", "sdtrain", "--config {cfg} --world-size 3", 2,
     "--world-size only goes with --dry-run-data"},
    {"sdtrain_fault_bad_action", "sdtrain", "--config {cfg} --fault checkpoint.write:2=explode", 2,
     "--fault: rule 'checkpoint.write:2=explode': unknown action 'explode'"},
    // sdsample: everything is checked before the model is loaded.
    {"sdsample_steps_not_a_number", "sdsample", "--model {dir}/adir --prompt x --steps many", 2,
     "the argument ('many') for option '--steps' is invalid"},
    {"sdsample_steps_zero", "sdsample", "--model {dir}/adir --prompt x --steps 0", 2, "--steps must be >= 1"},
    {"sdsample_height_not_a_multiple_of_8", "sdsample", "--model {dir}/adir --prompt x --H 100", 2,
     "--H 100: must be a positive multiple of 8"},
    {"sdsample_samples_zero", "sdsample", "--model {dir}/adir --prompt x --n-samples 0", 2, "--n-samples must be >= 1"},
    {"sdsample_iterations_zero", "sdsample", "--model {dir}/adir --prompt x --n-iter 0", 2, "--n-iter must be >= 1"},
    {"sdsample_scale_nan", "sdsample", "--model {dir}/adir --prompt x --scale nan", 2,
     "--scale must be a finite number >= 0"},
    {"sdsample_eta_infinite", "sdsample", "--model {dir}/adir --prompt x --eta inf", 2, "--eta must be a finite number >= 0"},
    {"sdsample_guidance_rescale_above_one", "sdsample", "--model {dir}/adir --prompt x --guidance-rescale 2", 2,
     "--guidance-rescale must be in [0, 1]"},
    {"sdsample_unknown_sampler", "sdsample", "--model {dir}/adir --prompt x --sampler heun3", 2,
     "unknown scheduler type 'heun3'"},
    {"sdsample_unknown_device", "sdsample", "--model {dir}/adir --prompt x --device tpu", 2,
     "--device tpu: expected auto, cpu or cuda"},
    {"sdsample_unknown_precision", "sdsample", "--model {dir}/adir --prompt x --precision fp8", 2,
     "--precision fp8: expected fp32, fp16 or bf16"},
    {"sdsample_seed_out_of_range", "sdsample", "--model {dir}/adir --prompt x --seed 99999999999999999999999", 2,
     "for option '--seed' is invalid"},
    {"sdsample_no_model", "sdsample", "--prompt x", 2, "--model is required"},
    {"sdsample_no_prompt", "sdsample", "--model {dir}/adir", 2, "--prompt or --from-file is required"},
    {"sdsample_prompt_file_missing", "sdsample", "--model {dir}/adir --from-file {dir}/missing.txt", 2,
     "--from-file {dir}/missing.txt: cannot read: No such file or directory"},
    {"sdsample_prompt_file_is_a_folder", "sdsample", "--model {dir}/adir --from-file {dir}/adir", 2,
     "--from-file {dir}/adir: cannot read: Is a directory"},
    {"sdsample_lora_missing", "sdsample", "--model {dir}/adir --prompt x --lora {dir}/style.safetensors", 2,
     "--lora {dir}/style.safetensors: no such file {dir}/style.safetensors"},
    {"sdsample_lora_weight_not_a_number", "sdsample", "--model {dir}/adir --prompt x --lora {dir}/afile:strong", 2,
     "--lora {dir}/afile:strong: the weight 'strong' is not a number"},
    {"sdsample_outdir_under_a_file", "sdsample", "--model {dir}/adir --prompt x --outdir {dir}/afile/samples", 2,
     "--outdir {dir}/afile/samples: cannot write there: {dir}/afile is not a folder"},
    {"sdsample_model_missing", "sdsample", "--model {dir}/missing --prompt x --outdir {dir}/samples", 2,
     "{dir}/missing: no such file or folder", "{dir}/samples"},
    {"sdsample_model_folder_not_diffusers", "sdsample", "--model {dir}/adir --prompt x --outdir {dir}/samples", 2,
     "{dir}/adir: a directory but not a diffusers folder (no model_index.json)", "{dir}/samples"},
    {"sdsample_model_unknown_format", "sdsample", "--model {dir}/afile --prompt x --outdir {dir}/samples", 2,
     "{dir}/afile: unknown weights format (expected .ckpt, .safetensors or a diffusers folder)", "{dir}/samples"},
    // sdconvert: the output is checked before the input is read.
    {"sdconvert_no_output", "sdconvert", "--input {dir}/afile", 2, "--input and --output are required"},
    {"sdconvert_input_missing", "sdconvert", "--input {dir}/missing.ckpt --output {dir}/o.safetensors", 2,
     "bad input: {dir}/missing.ckpt: no such file or directory", "{dir}/o.safetensors"},
    {"sdconvert_input_folder_not_diffusers", "sdconvert", "--input {dir}/adir --output {dir}/o.safetensors", 2,
     "{dir}/adir: a directory but not a diffusers folder (no model_index.json)", "{dir}/o.safetensors"},
    {"sdconvert_input_empty_safetensors", "sdconvert", "--input {dir}/afile --output {dir}/o.safetensors --to kohya", 2,
     "{dir}/afile: safetensors header: file is 0 bytes", "{dir}/o.safetensors"},
    {"sdconvert_output_is_the_input", "sdconvert", "--input {dir}/afile --output {dir}/afile", 2,
     "--output names the input {dir}/afile; refusing to overwrite it"},
    {"sdconvert_output_exists", "sdconvert", "--input {dir}/missing.ckpt --output {dir}/adir", 2,
     "--output {dir}/adir exists; refusing to overwrite it"},
    {"sdconvert_output_under_a_file", "sdconvert", "--input {dir}/missing.ckpt --output {dir}/afile/o.ckpt", 2,
     "--output {dir}/afile/o.ckpt: cannot write there: {dir}/afile is not a folder"},
    {"sdconvert_unknown_format", "sdconvert", "--input {dir}/afile --output {dir}/o.bin --to onnx", 2,
     "unknown weights format 'onnx' (expected ckpt, safetensors or diffusers)", "{dir}/o.bin"},
    {"sdconvert_merge_weight_not_a_number", "sdconvert",
     "--input {dir}/afile --output {dir}/o.ckpt --merge-lora {dir}/afile:half", 2,
     "--merge-lora {dir}/afile:half: the weight 'half' is not a number", "{dir}/o.ckpt"},
    {"sdconvert_tokenizer_not_a_tokenizer", "sdconvert", "--input {dir}/afile --output {dir}/o --tokenizer {dir}/adir", 2,
     "--tokenizer {dir}/adir is not a tokenizer folder", "{dir}/o"},
    // sddata.
    {"sddata_no_verb", "sddata", "", 2,
     "expected `inspect`, `verify`, `list` or `convert` with a PATH or --config FILE"},
    {"sddata_unknown_verb", "sddata", "transmogrify {dir}/adir", 2,
     "expected `inspect`, `verify`, `list` or `convert`"},
    {"sddata_path_and_config", "sddata", "inspect {dir}/adir --config {cfg}", 2, "(not both)"},
    {"sddata_folder_missing", "sddata", "inspect {dir}/missing", 2,
     "{dir}/missing: not a dataset: expected an image folder"},
    {"sddata_convert_without_to", "sddata", "convert {dir}/adir {dir}/out", 2, "convert takes OUT and --to LAYOUT"},
    {"sddata_convert_unknown_layout", "sddata", "convert {dir}/adir {dir}/out --to zip", 2,
     "--to: unknown layout 'zip' (image_folder, webdataset or parquet)"},
    {"sddata_convert_shard_size_zero", "sddata", "convert {dir}/adir {dir}/out --to webdataset --shard-size 0", 2,
     "--shard-size: must be >= 1"},
    {"sddata_convert_into_a_file", "sddata", "convert {dir}/adir {dir}/afile --to webdataset", 2,
     "{dir}/afile: exists and is not an empty folder; converting never overwrites"},
    {"sddata_shards_missing", "sddata", "list {dir}/train-{00000..00001}.tar", 2,
     "file not found: {dir}/train-00000.tar (from the pattern '{dir}/train-{00000..00001}.tar')"},
    {"sddata_folder_without_metadata", "sddata", "verify {dir}/adir", 2,
     "no metadata.csv or metadata.jsonl in {dir}/adir"},
    {"sddata_config_missing", "sddata", "inspect --config {dir}/missing.pbtxt", 2,
     "{dir}/missing.pbtxt: config file not found"},
    {"sddata_threads_zero", "sddata", "inspect {dir}/adir --threads 0", 2, "--threads must be >= 1, got 0"},
    {"sddata_buckets_negative", "sddata", "inspect {dir}/adir --buckets -512", 2,
     "--buckets must be a resolution >= 1, got -512"},
    {"sddata_buckets_not_a_number", "sddata", "inspect {dir}/adir --buckets big", 2,
     "the argument ('big') for option '--buckets' is invalid"},
    // sddemodata.
    {"sddemodata_no_output", "sddemodata", "", 2, "the option '--out' is required but missing"},
    {"sddemodata_count_zero", "sddemodata", "--out {dir}/shapes --count 0", 2, "--count must be >= 1, got 0",
     "{dir}/shapes"},
    {"sddemodata_size_too_small", "sddemodata", "--out {dir}/shapes --size 4", 2, "--size must be in 8..4096, got 4",
     "{dir}/shapes"},
    {"sddemodata_size_not_a_number", "sddemodata", "--out {dir}/shapes --size large", 2,
     "the argument ('large') for option '--size' is invalid", "{dir}/shapes"},
    {"sddemodata_output_exists", "sddemodata", "--out {dir}/adir", 2, "{dir}/adir already exists (use --force"},
    {"sddemodata_output_under_a_file", "sddemodata", "--out {dir}/afile/shapes", 2,
     "--out {dir}/afile/shapes: cannot write there: {dir}/afile is not a folder"},
};

INSTANTIATE_TEST_SUITE_P(Tools, BadInputSweep, ::testing::ValuesIn(kRows),
                         [](const ::testing::TestParamInfo<BadInput>& info) { return std::string(info.param.name); });

// A full disk while a checkpoint is written (the fault point checkpoint.write's enospc action):
// the run ends with exit code 1 naming the checkpoint, the file and the system's reason; the
// previous checkpoint stays complete, no partial folder is left, and the run resumes from it.
TEST(BadInput, AFullDiskDuringACheckpointEndsTheRunAndKeepsThePreviousOne) {
  const fs::path dir = prepare_scratch();
  const std::string sdtrain = (test::binary_dir() / "bin" / "sdtrain").string() + " --config " +
                              (dir / "cfg.pbtxt").string();
  std::string output;
  EXPECT_EQ(test::run_command(sdtrain + " --fault checkpoint.write:4=enospc", &output), 1) << output;
  const fs::path checkpoints = dir / "out" / "checkpoints";
  EXPECT_NE(output.find("sdtrain: error: checkpoint step 4 was not written (writing the files failed on rank 0: " +
                        (checkpoints / ".step-00000004.partial" / "model.safetensors").string() +
                        ": write failed: No space left on device); the checkpoints written before it are intact"),
            std::string::npos)
      << output;
  EXPECT_TRUE(fs::exists(checkpoints / "step-00000002" / "manifest.json")) << output;
  EXPECT_FALSE(fs::exists(checkpoints / "step-00000004"));
  EXPECT_FALSE(fs::exists(checkpoints / ".step-00000004.partial"));

  ASSERT_EQ(test::run_command(sdtrain + " --resume auto", &output), 0) << output;
  EXPECT_NE(output.find("resumed from " + (checkpoints / "step-00000002").string()), std::string::npos) << output;
  EXPECT_TRUE(fs::exists(checkpoints / "step-00000004" / "manifest.json")) << output;
}

}  // namespace
}  // namespace sdtrain
