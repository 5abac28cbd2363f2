// sdconvert: converts Stable Diffusion v1, 2.x and SDXL weights between an original .ckpt, an original single
// .safetensors and a diffusers folder (or from an sdtrain training checkpoint folder), optionally baking LoRA adapters in (--merge-lora), and
// converts LoRA adapter files between the kohya/A1111 and diffusers/PEFT layouts (--to kohya|peft).
// Exit codes: 0 ok, 1 unexpected failure, 2 bad usage or bad input (the message names the file and
// key at fault).
#include <boost/program_options.hpp>

#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "framework/util/strings.h"
#include "framework/train/checkpoint_snapshot.h"
#include "plugins/builtin_plugins.h"
#include "plugins/models/stable_diffusion/sd_pipeline.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "framework/util/file_util.h"
#include "sdtrain/errors.h"
#include "tools/sdconvert/adapter_networks.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

/// The same file or folder (also when one is spelled through a symlink or "..").
bool same_path(const std::string& a, const std::string& b) {
  std::error_code error;
  if (fs::exists(a) && fs::exists(b)) return fs::equivalent(a, b, error);
  return fs::weakly_canonical(a, error) == fs::weakly_canonical(b, error);
}

bool is_adapter_format(const std::string& to) { return to == "kohya" || to == "peft"; }

/// --to kohya|peft: an adapter file (any layout read_lora_file reads) rewritten in that layout. The targets (module paths and
/// shapes the file is checked against) come from --base, else from SD v1's architecture.
void convert_adapter(const std::string& input, const std::string& output, const std::string& to,
                     const std::string& base) {
  const sdtrain::LoraFormat format = sdtrain::parse_lora_format(to);
  if (fs::path(output).extension() != ".safetensors") {
    throw sdtrain::ConfigError("--output " + output + ": an adapter is written as a .safetensors file" +
                               (format == sdtrain::LoraFormat::kPeft
                                    ? " (diffusers' load_lora_weights(folder) looks for pytorch_lora_weights.safetensors)"
                                    : ""));
  }
  sdtrain::SdNetworks networks;
  if (base.empty()) {
    networks = sdtrain::sd_v1_adapter_networks();
  } else {
    sdtrain::SdLoadOptions load;
    load.strict = false;  // adapter_networks names every key at fault
    sdtrain::SdWeights weights = sdtrain::load_sd_weights(base, load);
    networks = sdtrain::adapter_networks(weights, base);
  }
  const auto targets = sdtrain::lora_targets(networks);
  sdtrain::LoraFile lora;
  try {
    lora = sdtrain::read_lora_file(input, targets);
  } catch (const sdtrain::FormatError& e) {
    if (!base.empty()) throw;
    throw sdtrain::FormatError(std::string(e.what()) +
                               "; without --base the adapter is checked against SD v1's modules: for SD 2.x or SDXL "
                               "give --base MODEL");
  }
  sdtrain::write_lora_file(lora, output, format, targets);
  std::size_t modules = 0;
  for (const auto& [key, tensor] : lora.tensors) modules += sdtrain::ends_with(key, ".lora_down.weight") ? 1 : 0;
  std::cout << "sdconvert: wrote " << output << " (" << sdtrain::lora_format_name(format) << " adapter, " << modules
            << " modules)\n";
}

/// Bakes each --merge-lora adapter, in order, into the UNet and text encoder of `weights`.
void merge_adapters(sdtrain::SdWeights& weights, const std::vector<sdtrain::LoraSpec>& specs, const std::string& input) {
  if (specs.empty()) return;
  sdtrain::SdNetworks networks = sdtrain::adapter_networks(weights, input);
  const auto targets = sdtrain::lora_targets(networks);
  for (const auto& spec : specs) {
    sdtrain::merge_lora(networks, sdtrain::read_lora_file(spec.path, targets), spec.weight, targets);
    std::cout << "sdconvert: merged " << spec.path << " (weight " << spec.weight << ")\n";
  }
  sdtrain::store_changed_weights(networks, weights);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options(
      "sdconvert: convert Stable Diffusion v1, 2.x and SDXL weights\n\n"
      "Usage:\n"
      "  sdconvert --input X --output Y [--to ckpt|safetensors|diffusers] [--use-ema] [--half]\n"
      "            [--merge-lora FILE[:WEIGHT]]...\n"
      "  sdconvert --input ADAPTER.safetensors --output OUT.safetensors --to kohya|peft [--base MODEL]\n\n"
      "Formats: an original (CompVis/LDM, Stability's SD 2.x and SDXL) .ckpt, an original single-file\n"
      ".safetensors (A1111/ComfyUI), or a diffusers folder (model_index.json, unet/, vae/, text_encoder/,\n"
      "..., StableDiffusionXLPipeline's text_encoder_2/ too); the input may also be\n"
      "a training checkpoint folder of sdtrain (<output_dir>/checkpoints/step-N): the run's model with\n"
      "its trained weights (--use-ema: its EMA weights), LoRA adapters merged. The output format\n"
      "comes from --to or else from the output name (.ckpt, .safetensors, anything else a folder).\n"
      "--merge-lora bakes LoRA/LoCon adapters (kohya/A1111, diffusers/PEFT or LyCORIS) into the UNet and\n"
      "text encoder: W += WEIGHT * alpha/rank * up.down, in float32, in the order given.\n"
      "--to kohya|peft converts an adapter file instead: kohya/A1111 keys (lora_unet_..., .alpha) or the\n"
      "diffusers/PEFT file save_lora_weights writes (unet.<module>.lora_A.weight, alphas in its header).\n"
      "It is checked against the modules of --base MODEL (needed for SD 2.x and SDXL adapters), or of\n"
      "SD v1's architecture without it.\n"
      "The output must not exist; the input is never modified. Exit codes: 0 ok, 1 failure, 2 bad\n"
      "usage or input.\n\nOptions");
  std::string input, output, to, tokenizer, tokenizer_2, base, prediction_type;
  std::vector<std::string> merge_loras;
  options.add_options()
      ("help,h", "print this help and exit")
      ("input,i", po::value(&input)->value_name("PATH"),
       "the weights to read (.ckpt, .safetensors, a diffusers folder or a training checkpoint folder)")
      ("output,o", po::value(&output)->value_name("PATH"), "where to write (must not exist)")
      ("to", po::value(&to)->value_name("FORMAT"),
       "output format: ckpt, safetensors or diffusers for a model; kohya or peft for an adapter")
      ("use-ema", "take the EMA UNet weights (model_ema.*) as the UNet when present, dropping the non-EMA ones")
      ("half", "store floating-point weights as float16")
      ("prediction-type", po::value(&prediction_type)->value_name("TYPE"),
       "epsilon or v_prediction: what the UNet predicts, written into the output's scheduler config; "
       "needed to write a diffusers folder from an SD 2.x single file (512 px base models: epsilon, "
       "768 px models: v_prediction), which does not record it")
      ("strict", "fail on any missing or unexpected key instead of warning")
      ("tokenizer", po::value(&tokenizer)->value_name("DIR"),
       "a tokenizer folder (vocab.json + merges.txt, or tokenizer.json + tokenizer_config.json) to copy into a diffusers output")
      ("tokenizer-2", po::value(&tokenizer_2)->value_name("DIR"),
       "SDXL: the second tokenizer's folder, copied to tokenizer_2/ (default: CLIP's, padding with \"!\")")
      ("merge-lora", po::value(&merge_loras)->value_name("FILE[:WEIGHT]"),
       "bake a LoRA/LoCon adapter into the model at WEIGHT (default 1.0); repeatable")
      ("base", po::value(&base)->value_name("MODEL"),
       "with --to kohya|peft: the model the adapter is for (default: SD v1's architecture)");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    po::notify(vm);
  } catch (const po::error& error) {
    std::cerr << "sdconvert: " << error.what() << "\n(see sdconvert --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (input.empty() || output.empty()) {
    std::cerr << "sdconvert: --input and --output are required (see sdconvert --help)\n";
    return 2;
  }
  try {
    sdtrain::anchor_builtin_plugins();  // keeps the built-in plugins linked in
    if (same_path(input, output)) throw sdtrain::ConfigError("--output names the input " + input + "; refusing to overwrite it");
    if (fs::exists(output)) throw sdtrain::ConfigError("--output " + output + " exists; refusing to overwrite it");
    if (std::string error; !sdtrain::folder_is_creatable(fs::path(output).parent_path().string(), error)) {
      throw sdtrain::ConfigError("--output " + output + ": cannot write there: " + error);
    }
    if (is_adapter_format(to)) {
      for (const char* option :
           {"merge-lora", "use-ema", "half", "strict", "tokenizer", "tokenizer-2", "prediction-type"}) {
        if (vm.count(option)) throw sdtrain::ConfigError(std::string("--") + option + " converts models, not adapters (--to " + to + ")");
      }
      convert_adapter(input, output, to, base);
      return 0;
    }
    if (!base.empty()) throw sdtrain::ConfigError("--base is for adapter conversion (--to kohya or peft)");
    std::vector<sdtrain::LoraSpec> specs;
    for (const auto& text : merge_loras) {
      // Checked before the model is read, which can take a while.
      specs.push_back(sdtrain::parse_lora_file_spec(text, "--merge-lora"));
    }
    const sdtrain::SdFormat format = to.empty() ? sdtrain::output_format_from_name(output) : sdtrain::parse_sd_format(to);
    if (!prediction_type.empty()) {
      sdtrain::scheduler_config_with_prediction_type("", prediction_type, "--prediction-type");  // checked early
    }
    for (const auto& [flag, dir] : {std::pair{"--tokenizer", tokenizer}, std::pair{"--tokenizer-2", tokenizer_2}}) {
      if (!dir.empty() && !fs::exists(fs::path(dir) / "vocab.json") && !fs::exists(fs::path(dir) / "tokenizer_config.json")) {
        throw sdtrain::ConfigError(std::string(flag) + " " + dir +
                                   " is not a tokenizer folder (no vocab.json or tokenizer_config.json)");
      }
    }
    sdtrain::SdLoadOptions load;
    load.use_ema = vm.count("use-ema") != 0;
    load.strict = vm.count("strict") != 0;
    sdtrain::SdWeights weights;
    if (sdtrain::is_checkpoint_folder(input)) {
      // The run's model rebuilt from the checkpoint's stored config, with the trained weights.
      weights = sdtrain::SdPipeline::load(input, load.use_ema)->checkpoint_weights();
    } else {
      weights = sdtrain::load_sd_weights(input, load);
    }
    if (!prediction_type.empty()) {
      const auto scheduler = weights.configs.find("scheduler");
      weights.configs["scheduler"] = sdtrain::scheduler_config_with_prediction_type(
          scheduler == weights.configs.end() ? "" : scheduler->second, prediction_type, "--prediction-type");
    } else if (format == sdtrain::SdFormat::kDiffusers && !sdtrain::prediction_type_is_known(weights)) {
      throw sdtrain::ConfigError(input + ": an SD 2.x single file does not record whether its UNet predicts noise "
                                 "(512 px base models) or v (768 px models); give --prediction-type epsilon or "
                                 "v_prediction for the diffusers folder's scheduler config");
    }
    merge_adapters(weights, specs, input);
    if (!tokenizer.empty()) weights.tokenizer_dir = tokenizer;
    if (!tokenizer_2.empty()) {
      if (!weights.is_sdxl()) throw sdtrain::ConfigError("--tokenizer-2: " + input + " has one text encoder (not SDXL)");
      weights.tokenizer_2_dir = tokenizer_2;
    }
    sdtrain::SdSaveOptions save;
    save.half = vm.count("half") != 0;
    sdtrain::save_sd_weights(weights, output, format, save);
    std::cout << "sdconvert: wrote " << output << " (" << sdtrain::sd_format_name(format) << ", unet "
              << weights.unet.size() << " / vae " << weights.vae.size() << " / text_encoder "
              << weights.text_encoder.size()
              << (weights.is_sdxl() ? " / text_encoder_2 " + std::to_string(weights.text_encoder_2.size()) : std::string())
              << " tensors" << (weights.unet_ema.empty() ? "" : ", with EMA")
              << ")\n";
    return 0;
  } catch (const sdtrain::ConfigError& error) {
    std::cerr << "sdconvert: " << error.what() << "\n";
    return 2;
  } catch (const sdtrain::FormatError& error) {
    std::cerr << "sdconvert: bad input: " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "sdconvert: error: " << error.what() << "\n";
    return 1;
  }
}
