// sdconvert: converts Stable Diffusion v1 weights between an original .ckpt, an original single
// .safetensors and a diffusers folder. Exit codes: 0 ok, 1 unexpected failure, 2 bad usage or
// bad input (the message names the file and key at fault).
#include <boost/program_options.hpp>

#include <filesystem>
#include <iostream>
#include <string>

#include "plugins/builtin_plugins.h"
#include "plugins/models/stable_diffusion/weights/sd_weights_io.h"
#include "sdtrain/errors.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

/// The same file or folder (also when one is spelled through a symlink or "..").
bool same_path(const std::string& a, const std::string& b) {
  std::error_code error;
  if (fs::exists(a) && fs::exists(b)) return fs::equivalent(a, b, error);
  return fs::weakly_canonical(a, error) == fs::weakly_canonical(b, error);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options(
      "sdconvert: convert Stable Diffusion v1 weights\n\n"
      "Usage:\n"
      "  sdconvert --input X --output Y [--to ckpt|safetensors|diffusers] [--use-ema] [--half]\n\n"
      "Formats: an original (CompVis/LDM) .ckpt, an original single-file .safetensors (A1111/ComfyUI),\n"
      "or a diffusers folder (model_index.json, unet/, vae/, text_encoder/, ...). The output format\n"
      "comes from --to or else from the output name (.ckpt, .safetensors, anything else a folder).\n"
      "The output must not exist; the input is never modified. Exit codes: 0 ok, 1 failure, 2 bad\n"
      "usage or input.\n\nOptions");
  std::string input, output, to, tokenizer;
  options.add_options()
      ("help,h", "print this help and exit")
      ("input,i", po::value(&input)->value_name("PATH"), "the weights to read (.ckpt, .safetensors or a diffusers folder)")
      ("output,o", po::value(&output)->value_name("PATH"), "where to write (must not exist)")
      ("to", po::value(&to)->value_name("FORMAT"), "output format: ckpt, safetensors or diffusers")
      ("use-ema", "take the EMA UNet weights (model_ema.*) as the UNet when present, dropping the non-EMA ones")
      ("half", "store floating-point weights as float16")
      ("strict", "fail on any missing or unexpected key instead of warning")
      ("tokenizer", po::value(&tokenizer)->value_name("DIR"),
       "a tokenizer folder (vocab.json + merges.txt, or tokenizer.json + tokenizer_config.json) to copy into a diffusers output");
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
    const sdtrain::SdFormat format = to.empty() ? sdtrain::output_format_from_name(output) : sdtrain::parse_sd_format(to);
    if (!tokenizer.empty() && !fs::exists(fs::path(tokenizer) / "vocab.json") &&
        !fs::exists(fs::path(tokenizer) / "tokenizer_config.json")) {
      throw sdtrain::ConfigError("--tokenizer " + tokenizer + " is not a tokenizer folder (no vocab.json or tokenizer_config.json)");
    }
    sdtrain::SdLoadOptions load;
    load.use_ema = vm.count("use-ema") != 0;
    load.strict = vm.count("strict") != 0;
    sdtrain::SdWeights weights = sdtrain::load_sd_weights(input, load);
    if (!tokenizer.empty()) weights.tokenizer_dir = tokenizer;
    sdtrain::SdSaveOptions save;
    save.half = vm.count("half") != 0;
    sdtrain::save_sd_weights(weights, output, format, save);
    std::cout << "sdconvert: wrote " << output << " (" << sdtrain::sd_format_name(format) << ", unet "
              << weights.unet.size() << " / vae " << weights.vae.size() << " / text_encoder "
              << weights.text_encoder.size() << " tensors" << (weights.unet_ema.empty() ? "" : ", with EMA")
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
