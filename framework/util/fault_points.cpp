#include "framework/util/fault_points.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "framework/util/strings.h"
#include "sdtrain/errors.h"

namespace sdtrain {
namespace detail {
std::atomic<int> fault_points_state{0};
}  // namespace detail

namespace {

constexpr const char* kEnvironmentVariable = "SDTRAIN_FAULTS";
constexpr const char* kFlag = "--fault";
constexpr const char* kGrammar = "POINT[:INDEX][@rankN]=crash|stall|exit:CODE|enospc, rules separated by ';'";
constexpr int kUnread = 0;
constexpr int kArmed = 2;

/// Every point by its rule-syntax name, in FaultPoint order.
constexpr FaultPoint kPoints[] = {FaultPoint::kCheckpointAfterPartsWrite, FaultPoint::kCheckpointWrite,
                                  FaultPoint::kCollectiveBefore, FaultPoint::kStepAfterBackward};

std::mutex rules_mutex;
std::vector<FaultRule> active_rules;  // guarded by rules_mutex
std::atomic<int> process_rank{-1};

std::vector<std::string> point_names() {
  std::vector<std::string> names;
  for (FaultPoint point : kPoints) names.emplace_back(fault_point_name(point));
  return names;
}

/// A whole non-negative decimal integer of type T, or nothing.
template <class T>
std::optional<T> parse_count(std::string_view text) {
  T value{};
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

FaultRule parse_rule(const std::string& text, std::string_view source) {
  const auto fail = [&](const std::string& what) -> ConfigError {
    return ConfigError(std::string(source) + ": rule '" + text + "': " + what + " (expected " + kGrammar + ")");
  };
  FaultRule rule;
  rule.text = text;

  const std::size_t equals = text.find('=');
  if (equals == std::string::npos) throw fail("no '=ACTION'");
  const std::string action = text.substr(equals + 1);
  if (action == "crash") {
    rule.action = FaultAction::kCrash;
  } else if (action == "stall") {
    rule.action = FaultAction::kStall;
  } else if (starts_with(action, "exit:")) {
    const auto code = parse_count<int>(std::string_view(action).substr(5));
    if (!code || *code > 255) throw fail("exit status '" + action.substr(5) + "' is not a number from 0 to 255");
    rule.action = FaultAction::kExit;
    rule.exit_code = *code;
  } else if (action == "enospc") {
    rule.action = FaultAction::kDiskFull;
  } else {
    throw fail("unknown action '" + action + "'");
  }

  std::string target = text.substr(0, equals);
  if (const std::size_t at = target.find('@'); at != std::string::npos) {
    const std::string rank = target.substr(at + 1);
    const auto number = starts_with(rank, "rank") ? parse_count<int>(std::string_view(rank).substr(4)) : std::nullopt;
    if (!number) throw fail("rank filter '@" + rank + "' is not '@rank' followed by a rank (0, 1, ...)");
    rule.rank = *number;
    target.resize(at);
  }
  if (const std::size_t colon = target.find(':'); colon != std::string::npos) {
    const std::string index = target.substr(colon + 1);
    const auto number = parse_count<int64_t>(index);
    if (!number) throw fail("index '" + index + "' is not a whole number (0, 1, ...)");
    rule.index = *number;
    target.resize(colon);
  }
  for (FaultPoint point : kPoints) {
    if (target == fault_point_name(point)) {
      rule.point = point;
      // Only a point whose caller writes files can make them fail.
      if (rule.action == FaultAction::kDiskFull && point != FaultPoint::kCheckpointWrite) {
        throw fail("action 'enospc' applies only to point checkpoint.write");
      }
      return rule;
    }
  }
  const std::string suggestion = closest_match(target, point_names());
  throw fail("unknown fault point '" + target + "'" +
             (suggestion.empty() ? std::string() : " (did you mean '" + suggestion + "'?)") + "; the points are " +
             join(point_names()));
}

/// Reads SDTRAIN_FAULTS and `flag_specs` into the active rules. Caller holds rules_mutex.
void configure_locked(const std::vector<std::string>& flag_specs) {
  std::vector<FaultRule> rules;
  if (const char* value = std::getenv(kEnvironmentVariable)) rules = parse_fault_rules(value, kEnvironmentVariable);
  for (const std::string& spec : flag_specs) {
    std::vector<FaultRule> more = parse_fault_rules(spec, kFlag);
    rules.insert(rules.end(), more.begin(), more.end());
  }
  active_rules = std::move(rules);
  detail::fault_points_state.store(active_rules.empty() ? detail::kFaultPointsIdle : kArmed,
                                   std::memory_order_release);
}

/// Prints the fired line; carries out crash, stall and exit (never returning), returns for enospc.
void fire(const FaultRule& rule, int64_t index) {
  const int rank = process_rank.load();
  const std::string who = rank >= 0 ? "rank " + std::to_string(rank) + ": " : std::string();
  const std::string action = rule.action == FaultAction::kStall      ? std::string("stall")
                             : rule.action == FaultAction::kExit     ? "exit:" + std::to_string(rule.exit_code)
                             : rule.action == FaultAction::kDiskFull ? "enospc (writes fail as on a full disk)"
                                                                     : "crash (exit status " +
                                                                           std::to_string(rule.exit_code) + ")";
  std::fprintf(stderr, "sdtrain: %sfault point %s:%lld fired: %s (rule '%s')\n", who.c_str(),
               fault_point_name(rule.point), static_cast<long long>(index), action.c_str(), rule.text.c_str());
  std::fflush(stderr);
  if (rule.action == FaultAction::kDiskFull) return;
  if (rule.action == FaultAction::kStall) {
    for (;;) pause();  // signal handlers may run; the thread never goes on
  }
  _exit(rule.exit_code);
}

}  // namespace

const char* fault_point_name(FaultPoint point) {
  switch (point) {
    case FaultPoint::kCheckpointAfterPartsWrite: return "checkpoint.after_parts_write";
    case FaultPoint::kCheckpointWrite: return "checkpoint.write";
    case FaultPoint::kCollectiveBefore: return "collective.before";
    case FaultPoint::kStepAfterBackward: return "step.after_backward";
  }
  return "unknown";
}

std::vector<FaultRule> parse_fault_rules(std::string_view spec, std::string_view source) {
  std::vector<FaultRule> rules;
  for (const std::string& part : split(std::string(spec), ';')) {
    const std::string text = trim(part);
    if (!text.empty()) rules.push_back(parse_rule(text, source));
  }
  return rules;
}

void configure_fault_points(const std::vector<std::string>& flag_specs) {
  std::lock_guard<std::mutex> lock(rules_mutex);
  configure_locked(flag_specs);
}

void set_fault_point_rank(int rank) { process_rank.store(rank); }

namespace detail {

bool fault_point_reached(FaultPoint point, int64_t index) {
  std::optional<FaultRule> match;
  {
    std::lock_guard<std::mutex> lock(rules_mutex);
    if (fault_points_state.load(std::memory_order_acquire) == kUnread) configure_locked({});
    const int rank = process_rank.load();
    for (const FaultRule& rule : active_rules) {
      if (rule.point == point && (!rule.index || *rule.index == index) && (!rule.rank || *rule.rank == rank)) {
        match = rule;
        break;
      }
    }
  }
  if (!match) return false;
  fire(*match, index);  // outside the lock: a stalled thread must not block the others
  return true;          // enospc: the only action that returns
}

}  // namespace detail
}  // namespace sdtrain
