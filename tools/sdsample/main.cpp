// sdsample: text-to-image sampling from a Stable Diffusion v1 model (a diffusers folder, an
// original .ckpt or single-file .safetensors), step for step as diffusers' StableDiffusionPipeline
// and the CompVis txt2img script. Exit codes: 0 ok, 1 unexpected failure, 2 bad usage or input
// (nothing is written then).
#include <boost/program_options.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "framework/data/image_grid.h"
#include "framework/log/progress_bar.h"
#include "framework/registry/registry.h"
#include "framework/util/file_util.h"
#include "framework/util/strings.h"
#include "plugins/builtin_plugins.h"
#include "plugins/models/stable_diffusion/sd_pipeline.h"
#include "plugins/models/stable_diffusion/weights/sd_component_configs.h"
#include "plugins/models/stable_diffusion/weights/sd_diffusers_config.h"
#include "plugins/models/stable_diffusion/weights/sd_lora_format.h"
#include "plugins/schedulers/noise/schedulers.pb.h"
#include "sdtrain/errors.h"
#include "sdtrain/noise_scheduler.h"
#include "tools/sdsample/sample_outputs.h"

namespace fs = std::filesystem;
namespace po = boost::program_options;

namespace {

struct Settings {
  std::string model;
  std::vector<std::string> prompts;
  std::string from_file;
  sdtrain::SampleRequest request;
  double eta = 0.0;  ///< DDIM's eta (--eta), given to the ddim sampler's options
  int n_samples = 4;
  int n_iter = 1;  ///< batches per prompt (--n-iter)
  std::string outdir = "outputs/txt2img-samples";
  bool use_ema = false;
  std::string prediction_type;  ///< --prediction-type; "" = as the model says
  bool grid = true;
  std::string device = "auto";
  std::string precision = "fp32";
  std::vector<std::string> lora_args;     ///< --lora FILE[:WEIGHT], as given
  std::vector<sdtrain::LoraSpec> loras;   ///< parsed by validate()
};

/// Non-empty lines of `path`, stripped (the CompVis script's --from-file).
std::vector<std::string> read_prompt_file(const std::string& path) {
  std::string text;
  try {
    text = sdtrain::read_file(path);
  } catch (const std::runtime_error& error) {
    throw sdtrain::ConfigError(std::string("--from-file ") + error.what());
  }
  std::vector<std::string> prompts;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    line = sdtrain::trim(line);
    if (!line.empty()) prompts.push_back(line);
  }
  if (prompts.empty()) throw sdtrain::ConfigError("--from-file " + path + ": no prompts in it (every line is empty)");
  return prompts;
}

/// Checks everything that can be checked before loading the model, so bad input writes nothing.
void validate(Settings& settings) {
  if (settings.model.empty()) throw sdtrain::ConfigError("--model is required (see sdsample --help)");
  if (!settings.from_file.empty()) {
    if (!settings.prompts.empty()) throw sdtrain::ConfigError("give --prompt or --from-file, not both");
    settings.prompts = read_prompt_file(settings.from_file);
  }
  if (settings.prompts.empty()) throw sdtrain::ConfigError("--prompt or --from-file is required");
  const auto& request = settings.request;
  for (const auto& [name, value] : {std::pair<const char*, int>{"--H", request.height}, {"--W", request.width}}) {
    if (value <= 0 || value % 8 != 0) {
      throw sdtrain::ConfigError(std::string(name) + " " + std::to_string(value) + ": must be a positive multiple of 8");
    }
  }
  if (request.steps < 1) throw sdtrain::ConfigError("--steps must be >= 1");
  if (settings.n_samples < 1) throw sdtrain::ConfigError("--n-samples must be >= 1");
  if (settings.n_iter < 1) throw sdtrain::ConfigError("--n-iter must be >= 1");
  // Written so that NaN fails too.
  if (!(request.guidance_scale >= 0 && std::isfinite(request.guidance_scale))) {
    throw sdtrain::ConfigError("--scale must be a finite number >= 0");
  }
  if (!(request.guidance_rescale >= 0 && request.guidance_rescale <= 1)) {
    throw sdtrain::ConfigError("--guidance-rescale must be in [0, 1]");
  }
  if (!(settings.eta >= 0 && std::isfinite(settings.eta))) throw sdtrain::ConfigError("--eta must be a finite number >= 0");
  // Unknown sampler: the registry's message lists the registered ones.
  sdtrain::sampler_spec_from_scheduler_config(request.sampler, "", "--sampler");
  if (!settings.prediction_type.empty()) {
    sdtrain::scheduler_config_with_prediction_type("", settings.prediction_type, "--prediction-type");
  }
  if (settings.device != "auto" && settings.device != "cpu" && settings.device != "cuda") {
    throw sdtrain::ConfigError("--device " + settings.device + ": expected auto, cpu or cuda");
  }
  if (settings.precision != "fp32" && settings.precision != "fp16" && settings.precision != "bf16") {
    throw sdtrain::ConfigError("--precision " + settings.precision + ": expected fp32, fp16 or bf16");
  }
  for (const auto& text : settings.lora_args) settings.loras.push_back(sdtrain::parse_lora_file_spec(text, "--lora"));
  if (std::string error; !sdtrain::folder_is_creatable(settings.outdir, error)) {
    throw sdtrain::ConfigError("--outdir " + settings.outdir + ": cannot write there: " + error);
  }
  if (settings.device == "cuda" && !torch::cuda::is_available()) {
    throw sdtrain::ConfigError("--device cuda: no CUDA device is available");
  }
}

torch::ScalarType dtype_of(const std::string& precision) {
  if (precision == "fp16") return torch::kFloat16;
  if (precision == "bf16") return torch::kBFloat16;
  return torch::kFloat32;
}

/// Bakes each --lora adapter into the networks, in order, while they are still the float32
/// weights as loaded (before to() casts them), so the merge is as exact as fuse_lora's.
void apply_loras(const Settings& settings, const sdtrain::SdPipeline& pipeline) {
  if (settings.loras.empty()) return;
  sdtrain::SdNetworks networks = pipeline.networks();  // holders: the same modules
  const auto targets = sdtrain::lora_targets(networks);
  for (const auto& spec : settings.loras) {
    const sdtrain::LoraFile lora = sdtrain::read_lora_file(spec.path, targets);
    sdtrain::merge_lora(networks, lora, spec.weight, targets);
    std::cout << "sdsample: applied " << spec.path << " (weight " << spec.weight << ")\n";
  }
}

int sample(Settings& settings) {
  auto pipeline = sdtrain::SdPipeline::load(settings.model, settings.use_ema, settings.prediction_type);
  apply_loras(settings, *pipeline);
  const torch::Device device =
      settings.device == "cpu" || (settings.device == "auto" && !torch::cuda::is_available()) ? torch::Device(torch::kCPU)
                                                                                               : torch::Device(torch::kCUDA);
  pipeline->to(device, dtype_of(settings.precision));

  sdtrain::SampleRequest& request = settings.request;
  sdtrain::PluginSpec spec = pipeline->sampler_spec(request.sampler);
  if (request.sampler == "ddim") {
    sdtrain::DdimSchedulerOptions ddim;
    if (spec.has_options()) spec.options().UnpackTo(&ddim);
    ddim.set_eta(settings.eta);
    spec.mutable_options()->PackFrom(ddim);
  }
  auto sampler = sdtrain::Registry<sdtrain::NoiseScheduler>::instance().create(spec, sdtrain::PluginContext{}, "--sampler");

  sdtrain::SampleWriter writer(settings.outdir);
  const auto prompt_count = static_cast<int64_t>(settings.prompts.size());
  const int64_t batches = prompt_count * settings.n_iter;
  sdtrain::ProgressBar progress(batches * request.steps, "sampling");
  std::vector<sdtrain::Image> all_images;
  const std::uint64_t base_seed = request.seed;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batches; ++b) {
    // Batch b (prompt b / n_iter) is n_samples images drawn from seed + b: the first batch's
    // images are diffusers' pipeline(prompt, num_images_per_prompt=n, generator=manual_seed(seed)).
    const std::string& prompt = settings.prompts[static_cast<std::size_t>(b / settings.n_iter)];
    request.prompts.assign(static_cast<std::size_t>(settings.n_samples), prompt);
    request.seed = base_seed + static_cast<std::uint64_t>(b);
    const auto images = sdtrain::txt2img(pipeline->networks(), *sampler, request, device, [&](int step, int) {
      progress.update(b * request.steps + step, "batch " + std::to_string(b + 1) + "/" + std::to_string(batches));
    });
    const auto text = sdtrain::sample_png_text(request, prompt, settings.model);
    for (const auto& image : images) std::cout << "sdsample: wrote " << writer.write_sample(image, text) << "\n";
    if (settings.grid) all_images.insert(all_images.end(), images.begin(), images.end());
  }
  progress.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "sdsample: sampled " << batches * settings.n_samples << " image(s) in " << seconds << " s ("
            << seconds / double(batches * request.steps) << " s per step of a batch of " << settings.n_samples
            << ")\n";
  if (settings.grid) {
    request.seed = base_seed;
    auto text = sdtrain::sample_png_text(request, sdtrain::join(settings.prompts, "\n"), settings.model);
    const std::string path = writer.write_grid(sdtrain::make_image_grid(all_images, settings.n_samples), text);
    std::cout << "sdsample: wrote " << path << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings settings;
  auto& request = settings.request;
  request.sampler = "pndm";
  po::options_description options(
      "sdsample: text-to-image sampling from a Stable Diffusion v1 or 2.x model\n\n"
      "Usage:\n"
      "  sdsample --model PATH --prompt \"a man in armor\" [--n-samples 4] [--steps 50] [--scale 7.5]\n"
      "           [--sampler pndm] [--seed 42] [--H 512 --W 512] [--outdir DIR] [--lora FILE[:WEIGHT]]...\n\n"
      "The model is a diffusers folder, an original .ckpt or an original single-file .safetensors\n"
      "(an SD 2.x one needs --prediction-type), or a training checkpoint folder of sdtrain (sampled\n"
      "under its run's noise schedule).\n"
      "Each prompt gives --n-iter batches of --n-samples images, batch b (counted over all prompts)\n"
      "from seed + b; with the same seed, sampler and steps the images equal diffusers'\n"
      "StableDiffusionPipeline on the CPU in fp32. Images go to\n"
      "DIR/samples/NNNNN.png and a grid to DIR/grid-NNNN.png (never overwriting earlier ones), with\n"
      "the prompt, seed, sampler and steps in each PNG's text chunks. Exit codes: 0 ok, 1 failure,\n"
      "2 bad usage or input (nothing written).\n\nOptions");
  options.add_options()
      ("help,h", "print this help and exit")
      ("model", po::value(&settings.model)->value_name("PATH"), "diffusers folder, .ckpt or .safetensors")
      ("prompt", po::value(&settings.prompts)->value_name("TEXT"), "a prompt (repeatable)")
      ("from-file", po::value(&settings.from_file)->value_name("FILE"), "one prompt per line")
      ("negative-prompt", po::value(&request.negative_prompt)->value_name("TEXT"),
       "the unconditional prompt of classifier-free guidance (default empty)")
      ("n-samples", po::value(&settings.n_samples)->default_value(4), "images per batch")
      ("n-iter", po::value(&settings.n_iter)->default_value(1),
       "batches per prompt (e.g. DreamBooth's class images: --n-samples 4 --n-iter 50 --no-grid)")
      ("steps", po::value(&request.steps)->default_value(50), "sampler steps")
      ("scale", po::value(&request.guidance_scale)->default_value(7.5, "7.5"),
       "classifier-free guidance scale (<= 1 disables guidance)")
      ("guidance-rescale", po::value(&request.guidance_rescale)->default_value(0.0, "0"),
       "CFG rescale in [0, 1] (diffusers' guidance_rescale; 0 = off)")
      ("sampler", po::value(&request.sampler)->default_value("pndm"),
       "a noise scheduler: ddim, pndm (PLMS), euler, euler_ancestral, dpmpp_2m, ddpm")
      ("eta", po::value(&settings.eta)->default_value(0.0, "0"), "DDIM eta (0 = deterministic)")
      ("seed", po::value(&request.seed)->default_value(42), "seed of the initial noise")
      ("H", po::value(&request.height)->default_value(512), "image height in pixels (multiple of 8)")
      ("W", po::value(&request.width)->default_value(512), "image width in pixels (multiple of 8)")
      ("outdir", po::value(&settings.outdir)->default_value(settings.outdir), "output folder")
      ("lora", po::value(&settings.lora_args)->value_name("FILE[:WEIGHT]"),
       "apply a LoRA/LoCon adapter (kohya/A1111, diffusers/PEFT or LyCORIS .safetensors) at WEIGHT "
       "(default 1.0) by merging it into the weights; repeatable, applied in order")
      ("use-ema", "sample with the EMA UNet of the model file when it has one")
      ("prediction-type", po::value(&settings.prediction_type)->value_name("TYPE"),
       "what the UNet predicts: epsilon or v_prediction; overrides the model's scheduler config, and is "
       "needed for SD 2.x single files (512 px base models: epsilon, 768 px models: v_prediction)")
      ("no-grid", "do not write the grid image")
      ("device", po::value(&settings.device)->default_value("auto"), "auto (CUDA when available), cpu or cuda")
      ("precision", po::value(&settings.precision)->default_value("fp32"), "fp32, fp16 or bf16 weights");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    po::notify(vm);
  } catch (const po::error& error) {
    std::cerr << "sdsample: " << error.what() << "\n(see sdsample --help)\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  settings.use_ema = vm.count("use-ema") != 0;
  settings.grid = vm.count("no-grid") == 0;
  try {
    sdtrain::anchor_builtin_plugins();  // keeps the built-in plugins linked in
    validate(settings);
    return sample(settings);
  } catch (const sdtrain::ConfigError& error) {
    std::cerr << "sdsample: " << error.what() << "\n";
    return 2;
  } catch (const sdtrain::FormatError& error) {
    std::cerr << "sdsample: cannot load the model or an adapter: " << error.what() << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "sdsample: error: " << error.what() << "\n";
    return 1;
  }
}
