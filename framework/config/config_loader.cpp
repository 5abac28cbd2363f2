#include "framework/config/config_loader.h"

#include <charconv>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <regex>
#include <sstream>
#include <tuple>
#include <utility>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "framework/registry/plugin_loader.h"
#include "framework/registry/registry.h"
#include "framework/util/file_util.h"
#include "framework/util/strings.h"
#include "framework/util/utf8.h"
#include "sdtrain/callback.h"
#include "sdtrain/dataset.h"
#include "sdtrain/errors.h"
#include "sdtrain/lr_schedule.h"
#include "sdtrain/model.h"
#include "sdtrain/noise_scheduler.h"

namespace sdtrain {
namespace fs = std::filesystem;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

namespace {

std::vector<std::string> field_names(const Descriptor* descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->field_count(); ++i) names.push_back(descriptor->field(i)->name());
  return names;
}

/// Adds "did you mean X?" to protobuf's unknown-field message.
std::string with_field_suggestion(const std::string& message) {
  static const std::regex unknown(R"re(Message type "([\w.]+)" has no field named "(\w+)")re");
  std::smatch match;
  if (!std::regex_search(message, match, unknown)) return message;
  const Descriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(match[1]);
  if (descriptor == nullptr) return message;
  const std::string suggestion = closest_match(match[2], field_names(descriptor));
  std::string out = message;
  if (!suggestion.empty()) out += " Did you mean \"" + suggestion + "\"?";
  if (match[1] == "google.protobuf.Any") {
    out += " (plugin options are written as options { [type.googleapis.com/sdtrain.XOptions] { ... } })";
  }
  return out;
}

/// The 0-based line and column (in bytes) of `offset` in `text`.
std::pair<int, int> line_and_column(const std::string& text, std::size_t offset) {
  const std::size_t line_start = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
  const auto line = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
  const std::size_t column = line_start == std::string::npos ? offset : offset - line_start - 1;
  return {static_cast<int>(line), static_cast<int>(column)};
}

/// Protobuf reports some errors at the token after the culprit (the ':' after an unknown field
/// name, the start of the next line after a bad enum value). For messages that quote the culprit,
/// move the position back to its last occurrence before the reported one.
void point_at_quoted_token(const std::string& text, const std::string& message, int* line, int* column) {
  static const std::regex quoted(R"re((has no field named|Unknown enumeration value of|Non-repeated field) "(\w+)")re");
  std::smatch match;
  if (text.empty() || !std::regex_search(message, match, quoted)) return;
  std::size_t offset = 0;
  for (int l = 0; l < *line && offset != std::string::npos; ++l) {
    offset = text.find('\n', offset);
    if (offset != std::string::npos) ++offset;
  }
  if (offset == std::string::npos) return;
  const std::size_t found = text.rfind(match[2].str(), std::min(text.size(), offset + static_cast<std::size_t>(*column)));
  if (found == std::string::npos) return;
  std::tie(*line, *column) = line_and_column(text, found);
}

/// Collects parser errors as "FILE:LINE:COL: message" (1-based).
class CollectingErrors : public google::protobuf::io::ErrorCollector {
 public:
  CollectingErrors(std::string filename, const std::string& text) : filename_(std::move(filename)), text_(text) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!first_.empty()) return;
    point_at_quoted_token(text_, message, &line, &column);
    std::ostringstream out;
    out << filename_ << ":" << line + 1 << ":" << column + 1 << ": " << with_field_suggestion(message);
    if (message.find("Could not find type") != std::string::npos) {
      out << " (is the plugin library that defines it listed in plugin_libraries or --plugin?)";
    }
    first_ = out.str();
  }
  void AddWarning(int, int, const std::string&) override {}
  const std::string& first() const { return first_; }

 private:
  std::string filename_;
  const std::string& text_;
  std::string first_;
};

/// Parses `name` or `name[index]`.
struct PathSegment {
  std::string name;
  int index = -1;
};

PathSegment parse_segment(const std::string& segment, const std::string& path) {
  PathSegment out;
  const auto bracket = segment.find('[');
  if (bracket == std::string::npos) {
    out.name = segment;
    return out;
  }
  out.name = segment.substr(0, bracket);
  if (segment.back() != ']') throw ConfigError("--set " + path + ": malformed index in '" + segment + "'");
  const std::string digits = segment.substr(bracket + 1, segment.size() - bracket - 2);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
    throw ConfigError("--set " + path + ": index in '" + segment + "' must be a non-negative integer");
  }
  // from_chars, not stoi: an index beyond int's range must be a ConfigError, not std::out_of_range
  // (found by the config fuzzer).
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), out.index);
  if (error != std::errc() || end != digits.data() + digits.size()) {
    throw ConfigError("--set " + path + ": index in '" + segment + "' is out of range");
  }
  return out;
}

std::string type_label(const FieldDescriptor* field) {
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
    std::vector<std::string> values;
    for (int i = 0; i < field->enum_type()->value_count(); ++i) values.push_back(field->enum_type()->value(i)->name());
    return "one of " + join(values, "|");
  }
  return field->type_name();
}

/// The options message type registered for plugin `type` in any family, or null.
const Descriptor* options_type_for_plugin(const std::string& type) {
  const PluginEntry* entry = Registry<Model>::instance().find(type);
  if (!entry) entry = Registry<Dataset>::instance().find(type);
  if (!entry) entry = Registry<NoiseScheduler>::instance().find(type);
  if (!entry) entry = Registry<LrSchedule>::instance().find(type);
  if (!entry) entry = Registry<Callback>::instance().find(type);
  return entry ? entry->options_type : nullptr;
}

std::unique_ptr<Message> new_message(const Descriptor* descriptor) {
  return std::unique_ptr<Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor)->New());
}

/// TextFormat's static ParseFieldValueFromString reports a bad value through protobuf's logger too
/// (a stray "[libprotobuf ERROR ...]" line beside our message); a parser with a collector does not.
bool parse_field_value(const std::string& text, const FieldDescriptor* field, Message* message) {
  CollectingErrors ignored("--set", text);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&ignored);
  return parser.ParseFieldValueFromString(text, field, message);
}

void set_scalar(Message* message, const FieldDescriptor* field, int index, const std::string& value,
                const std::string& path) {
  const Reflection* reflection = message->GetReflection();
  const bool is_string = field->cpp_type() == FieldDescriptor::CPPTYPE_STRING;
  if (!field->is_repeated()) {
    if (index >= 0) throw ConfigError("--set " + path + ": '" + field->name() + "' is not repeated");
    if (is_string) {
      reflection->SetString(message, field, value);
      return;
    }
    if (!parse_field_value(value, field, message)) {
      throw ConfigError("--set " + path + ": " + field->full_name() + " expects " + type_label(field) +
                        ", got '" + value + "'");
    }
    return;
  }
  const int size = reflection->FieldSize(*message, field);
  if (index < 0 || index > size) {
    throw ConfigError("--set " + path + ": '" + field->name() + "' is repeated; use " + field->name() +
                      "[i] with 0 <= i <= " + std::to_string(size));
  }
  // Rebuild the repeated field in a scratch copy so a bad value leaves the config untouched.
  auto rebuilt = new_message(message->GetDescriptor());
  rebuilt->CopyFrom(*message);
  const Reflection* rebuilt_reflection = rebuilt->GetReflection();
  rebuilt_reflection->ClearField(rebuilt.get(), field);
  for (int i = 0; i <= size; ++i) {
    if (i == size && index != size) break;
    const bool replaced = (i == index);
    if (is_string) {
      rebuilt_reflection->AddString(rebuilt.get(), field,
                                    replaced ? value : reflection->GetRepeatedString(*message, field, i));
      continue;
    }
    std::string text = value;
    if (!replaced) google::protobuf::TextFormat::PrintFieldValueToString(*message, field, i, &text);
    if (!parse_field_value(text, field, rebuilt.get())) {
      throw ConfigError("--set " + path + ": " + field->full_name() + " expects " + type_label(field) +
                        ", got '" + value + "'");
    }
  }
  message->CopyFrom(*rebuilt);
}

void apply_path(Message* message, const std::vector<std::string>& segments, std::size_t at,
                const std::string& value, const std::string& path) {
  const PathSegment segment = parse_segment(segments[at], path);
  const Descriptor* descriptor = message->GetDescriptor();
  const FieldDescriptor* field = descriptor->FindFieldByName(segment.name);
  if (field == nullptr) {
    std::string error = "--set " + path + ": " + descriptor->full_name() + " has no field '" + segment.name + "'";
    const std::string suggestion = closest_match(segment.name, field_names(descriptor));
    if (!suggestion.empty()) error += "; did you mean " + suggestion + "?";
    throw ConfigError(error);
  }
  const bool last = at + 1 == segments.size();
  if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
    if (!last) throw ConfigError("--set " + path + ": '" + segment.name + "' is a scalar field, not a message");
    set_scalar(message, field, segment.index, value, path);
    return;
  }
  if (last) {
    throw ConfigError("--set " + path + ": '" + segment.name + "' is a message (" +
                      field->message_type()->full_name() + "); set one of its fields");
  }
  const Reflection* reflection = message->GetReflection();
  Message* child = nullptr;
  if (field->is_repeated()) {
    const int size = reflection->FieldSize(*message, field);
    if (segment.index < 0 || segment.index > size) {
      throw ConfigError("--set " + path + ": '" + field->name() + "' is repeated; use " + field->name() +
                        "[i] with 0 <= i <= " + std::to_string(size));
    }
    child = segment.index == size ? reflection->AddMessage(message, field)
                                  : reflection->MutableRepeatedMessage(message, field, segment.index);
  } else {
    if (segment.index >= 0) throw ConfigError("--set " + path + ": '" + field->name() + "' is not repeated");
    child = reflection->MutableMessage(message, field);
  }
  if (field->message_type()->full_name() != google::protobuf::Any::descriptor()->full_name()) {
    apply_path(child, segments, at + 1, value, path);
    return;
  }
  // Enter plugin options packed in an Any: unpack, set, pack again.
  auto* any = static_cast<google::protobuf::Any*>(child);
  const Descriptor* options_type = nullptr;
  if (!any->type_url().empty()) {
    const std::string name = any->type_url().substr(any->type_url().rfind('/') + 1);
    options_type = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name);
  } else if (auto* spec = dynamic_cast<PluginSpec*>(message)) {
    options_type = options_type_for_plugin(spec->type());
  }
  if (options_type == nullptr) {
    throw ConfigError("--set " + path + ": cannot tell the options type of '" + segment.name +
                      "' (set the plugin's type first)");
  }
  auto options = new_message(options_type);
  if (!any->type_url().empty() && !any->UnpackTo(options.get())) {
    throw ConfigError("--set " + path + ": could not decode " + options_type->full_name());
  }
  apply_path(options.get(), segments, at + 1, value, path);
  any->PackFrom(*options);
}

void require(bool condition, const std::string& field, const std::string& expectation) {
  if (!condition) throw ConfigError(field + ": " + expectation);
}

/// Sets every unset field to its default, recursively (Any options included when known).
void fill_defaults(Message* message) {
  const Reflection* reflection = message->GetReflection();
  const Descriptor* descriptor = message->GetDescriptor();
  if (descriptor->full_name() == google::protobuf::Any::descriptor()->full_name()) {
    auto* any = static_cast<google::protobuf::Any*>(message);
    const std::string name = any->type_url().substr(any->type_url().rfind('/') + 1);
    const Descriptor* type = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(name);
    if (type == nullptr) return;
    auto options = new_message(type);
    if (!any->UnpackTo(options.get())) return;
    fill_defaults(options.get());
    any->PackFrom(*options);
    return;
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    // A field whose presence turns something on, or a oneof's member, stays unset: filling it in
    // would turn the feature on (or choose the oneof's case) when the text is read back.
    if (!field->is_repeated() && !reflection->HasField(*message, field) &&
        (field->options().GetExtension(presence_matters) || field->containing_oneof() != nullptr)) {
      continue;
    }
    if (field->is_repeated()) {
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        for (int j = 0; j < reflection->FieldSize(*message, field); ++j) {
          fill_defaults(reflection->MutableRepeatedMessage(message, field, j));
        }
      }
      continue;
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      // Plugin specs left unset stay unset: their defaults are the plugin's business.
      if (field->message_type() == PluginSpec::descriptor() && !reflection->HasField(*message, field)) continue;
      if (field->message_type()->full_name() == google::protobuf::Any::descriptor()->full_name() &&
          !reflection->HasField(*message, field)) {
        continue;
      }
      fill_defaults(reflection->MutableMessage(message, field));
      continue;
    }
    if (reflection->HasField(*message, field)) continue;
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: reflection->SetInt32(message, field, field->default_value_int32()); break;
      case FieldDescriptor::CPPTYPE_INT64: reflection->SetInt64(message, field, field->default_value_int64()); break;
      case FieldDescriptor::CPPTYPE_UINT32: reflection->SetUInt32(message, field, field->default_value_uint32()); break;
      case FieldDescriptor::CPPTYPE_UINT64: reflection->SetUInt64(message, field, field->default_value_uint64()); break;
      case FieldDescriptor::CPPTYPE_FLOAT: reflection->SetFloat(message, field, field->default_value_float()); break;
      case FieldDescriptor::CPPTYPE_DOUBLE: reflection->SetDouble(message, field, field->default_value_double()); break;
      case FieldDescriptor::CPPTYPE_BOOL: reflection->SetBool(message, field, field->default_value_bool()); break;
      case FieldDescriptor::CPPTYPE_ENUM: reflection->SetEnum(message, field, field->default_value_enum()); break;
      case FieldDescriptor::CPPTYPE_STRING: reflection->SetString(message, field, field->default_value_string()); break;
      case FieldDescriptor::CPPTYPE_MESSAGE: break;
    }
  }
}

}  // namespace

std::string resolve_config_path(const std::string& base_dir, const std::string& path) {
  const fs::path given(path);
  return given.is_absolute() ? given.string() : (fs::path(base_dir) / given).lexically_normal().string();
}

void parse_text_config(const std::string& text, const std::string& filename, Message* message) {
  // Protobuf's text parser takes any bytes into a string field and only logs when it packs a
  // plugin's options, naming neither file nor line: a prompt saved as Latin-1 would reach the
  // tokenizer as invalid UTF-8.
  if (const std::size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    const auto [line, column] = line_and_column(text, bad);
    std::ostringstream out;
    out << filename << ":" << line + 1 << ":" << column + 1 << ": not valid UTF-8 (byte 0x" << std::hex
        << static_cast<int>(static_cast<unsigned char>(text[bad])) << "); a config is UTF-8 text, save it as UTF-8";
    throw ConfigError(out.str());
  }
  CollectingErrors errors(filename, text);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, message)) {
    throw ConfigError(errors.first().empty() ? filename + ": cannot parse the config" : errors.first());
  }
}

std::vector<std::string> read_plugin_libraries(const std::string& text, const std::string& filename) {
  // Only plugin_libraries is read; every other field is skipped unparsed (the parser's skipping
  // copes with nested messages and expanded Any syntax), so unknown option types do not matter.
  CollectingErrors errors(filename, text);
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(true);
  parser.AllowUnknownExtension(true);
  // A message type with that one field, built at run time: every other field is unknown to it.
  google::protobuf::DescriptorPool pool;
  google::protobuf::FileDescriptorProto file;
  file.set_name("sdtrain_plugin_libraries_only.proto");
  file.set_package("sdtrain_internal");
  auto* type = file.add_message_type();
  type->set_name("PluginLibrariesOnly");
  auto* field = type->add_field();
  field->set_name("plugin_libraries");
  field->set_number(TrainConfig::kPluginLibrariesFieldNumber);
  field->set_label(google::protobuf::FieldDescriptorProto::LABEL_REPEATED);
  field->set_type(google::protobuf::FieldDescriptorProto::TYPE_STRING);
  const google::protobuf::FileDescriptor* built = pool.BuildFile(file);
  google::protobuf::DynamicMessageFactory factory(&pool);
  std::unique_ptr<Message> message(factory.GetPrototype(built->message_type(0))->New());
  if (!parser.ParseFromString(text, message.get())) {
    throw ConfigError(errors.first().empty() ? filename + ": cannot parse the config" : errors.first());
  }
  std::vector<std::string> libraries;
  const FieldDescriptor* libraries_field = built->message_type(0)->field(0);
  for (int i = 0; i < message->GetReflection()->FieldSize(*message, libraries_field); ++i) {
    libraries.push_back(message->GetReflection()->GetRepeatedString(*message, libraries_field, i));
  }
  return libraries;
}

void apply_override(Message* message, const std::string& assignment) {
  const auto equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw ConfigError("--set " + assignment + ": expected path.to.field=value");
  }
  const std::string path = assignment.substr(0, equals);
  const std::string value = assignment.substr(equals + 1);
  if (const std::size_t bad = find_invalid_utf8(assignment); bad != std::string_view::npos) {
    throw ConfigError("--set " + path + ": not valid UTF-8 at byte " + std::to_string(bad) +
                      " of the override; give it as UTF-8 text");
  }
  apply_path(message, split(path, '.'), 0, value, path);
}

void validate_train_config(const TrainConfig& config, const std::string& base_dir) {
  const RunConfig& run = config.run();
  require(run.max_steps() >= 0, "run.max_steps", "must be >= 0 (0 = no step limit)");
  require(run.max_epochs() >= 0, "run.max_epochs", "must be >= 0 (0 = no epoch limit)");
  require(run.max_steps() > 0 || run.max_epochs() > 0, "run.max_steps",
          "set run.max_steps or run.max_epochs (both are 0, the run would never end)");
  require(run.log_every_n_steps() > 0, "run.log_every_n_steps", "must be > 0");
  require(run.val_every_n_epochs() >= 0, "run.val_every_n_epochs", "must be >= 0 (0 = never)");
  require(run.checkpoint_every_n_steps() >= 0, "run.checkpoint_every_n_steps", "must be >= 0 (0 = only at the end)");
  require(run.keep_last_checkpoints() == -1 || run.keep_last_checkpoints() >= 1, "run.keep_last_checkpoints",
          "must be -1 (keep all) or >= 1");
  require(!run.output_dir().empty(), "run.output_dir", "must not be empty");
  require(run.device() == "auto" || run.device() == "cpu" || starts_with(run.device(), "cuda"), "run.device",
          "must be auto, cpu, cuda or cuda:N, got '" + run.device() + "'");
  if (!run.resume().empty() && run.resume() != "auto") {
    const std::string resume = resolve_config_path(base_dir, run.resume());
    require(fs::is_directory(resume), "run.resume", "checkpoint directory not found: " + resume);
    require(fs::is_regular_file(fs::path(resume) / "manifest.json"), "run.resume",
            resume + " is not a complete checkpoint (no manifest.json)");
  }

  const DataConfig& data = config.data();
  require(data.has_train(), "data.train", "missing: the training dataset plugin");
  require(data.batch_size() > 0, "data.batch_size", "must be > 0, got " + std::to_string(data.batch_size()));
  require(data.num_workers() >= 0, "data.num_workers", "must be >= 0");
  require(data.prefetch_batches() >= 1, "data.prefetch_batches", "must be >= 1");
  require(data.shuffle_buffer() >= 0, "data.shuffle_buffer", "must be >= 0");
  require(data.caption_dropout() >= 0 && data.caption_dropout() <= 1, "data.caption_dropout", "must be in [0, 1]");
  require(data.transforms().resolution() > 0 && data.transforms().resolution() % 8 == 0,
          "data.transforms.resolution", "must be a positive multiple of 8, got " +
                                            std::to_string(data.transforms().resolution()));
  require(data.bad_data().max_bad_samples() >= -1, "data.bad_data.max_bad_samples", "must be -1 or >= 0");
  require(data.bad_data().max_image_pixels() > 0, "data.bad_data.max_image_pixels", "must be > 0");

  if (data.has_validation_loss()) {
    const ValidationLossConfig& validation_loss = data.validation_loss();
    const float fraction = validation_loss.held_out_fraction();
    require(fraction >= 0 && fraction < 1, "data.validation_loss.held_out_fraction", "must be in [0, 1)");
    require(validation_loss.has_dataset() != (fraction > 0), "data.validation_loss",
            "give exactly one of dataset and held_out_fraction");
    require(validation_loss.batch_size() >= 0, "data.validation_loss.batch_size", "must be >= 0 (0 = data.batch_size)");
    if (validation_loss.has_dataset()) {
      Registry<Dataset>::instance().check(validation_loss.dataset(), "data.validation_loss.dataset");
    }
  }

  const LossScalingConfig& scaling = config.loss_scaling();
  require(scaling.init_scale() > 0, "loss_scaling.init_scale", "must be > 0");
  require(scaling.growth_factor() > 1, "loss_scaling.growth_factor", "must be > 1");
  require(scaling.backoff_factor() > 0 && scaling.backoff_factor() < 1, "loss_scaling.backoff_factor",
          "must be in (0, 1)");
  require(scaling.growth_interval() >= 1, "loss_scaling.growth_interval", "must be >= 1");

  const OptimizerConfig& optimizer = config.optimizer();
  require(optimizer.base_learning_rate() > 0, "optimizer.base_learning_rate", "must be > 0");
  require(optimizer.beta1() >= 0 && optimizer.beta1() < 1, "optimizer.beta1", "must be in [0, 1)");
  require(optimizer.beta2() >= 0 && optimizer.beta2() < 1, "optimizer.beta2", "must be in [0, 1)");
  require(optimizer.eps() > 0, "optimizer.eps", "must be > 0");
  require(optimizer.weight_decay() >= 0, "optimizer.weight_decay", "must be >= 0");
  require(config.gradient_accumulation_steps() >= 1, "gradient_accumulation_steps", "must be >= 1");
  require(config.gradient_clip_norm() >= 0, "gradient_clip_norm", "must be >= 0 (0 = no clipping)");

  const EmaConfig& ema = config.ema();
  require(ema.decay() >= 0 && ema.decay() <= 1, "ema.decay", "must be in [0, 1]");
  require(ema.update_every() >= 1, "ema.update_every", "must be >= 1");

  const DistributedConfig& distributed = config.distributed();
  require(distributed.bucket_size_mb() >= 0, "distributed.bucket_size_mb", "must be >= 0 (0: the backend's default)");
  require(distributed.collective_timeout_s() > 0, "distributed.collective_timeout_s", "must be > 0");

  require(config.has_model(), "model", "missing: the model plugin (e.g. type: \"stable_diffusion\")");
  Registry<Model>::instance().check(config.model(), "model");
  Registry<Dataset>::instance().check(data.train(), "data.train");
  if (data.has_validation()) Registry<Dataset>::instance().check(data.validation(), "data.validation");
  if (config.has_lr_schedule()) Registry<LrSchedule>::instance().check(config.lr_schedule(), "lr_schedule");
  for (int i = 0; i < config.callbacks_size(); ++i) {
    Registry<Callback>::instance().check(config.callbacks(i), "callbacks[" + std::to_string(i) + "]");
  }
}

LoadedConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides,
                               const std::vector<std::string>& extra_plugins) {
  LoadedConfig loaded;
  loaded.path = path;
  loaded.base_dir = fs::path(path).parent_path().string();
  if (loaded.base_dir.empty()) loaded.base_dir = ".";
  if (!fs::exists(path)) throw ConfigError(path + ": config file not found");
  const std::string text = read_file<ConfigError>(path);
  load_plugin_libraries(read_plugin_libraries(text, path), loaded.base_dir);
  load_plugin_libraries(extra_plugins, ".");
  parse_text_config(text, path, &loaded.config);
  for (const auto& assignment : overrides) apply_override(&loaded.config, assignment);
  validate_train_config(loaded.config, loaded.base_dir);
  return loaded;
}

std::string config_to_text(const TrainConfig& config, bool with_defaults) {
  TrainConfig copy = config;
  if (with_defaults) fill_defaults(&copy);
  google::protobuf::TextFormat::Printer printer;
  printer.SetExpandAny(true);
  std::string text;
  printer.PrintToString(copy, &text);
  return text;
}

}  // namespace sdtrain
