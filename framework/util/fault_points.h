#pragma once
/// Fault points: named places in sdtrain where a process can be made to crash, hang or exit on
/// purpose, so that tests and operators can rehearse failures (a node that dies, a GPU that
/// hangs, a power cut in the middle of a checkpoint write) on a real job. docs/fault-injection.md
/// is the operator's guide.
///
/// Rules come from the environment variable SDTRAIN_FAULTS and from sdtrain's repeatable
/// `--fault RULES` flag (added after the variable's), in one grammar:
///
///   RULES  := RULE (';' RULE)*       whitespace around a rule and empty rules are ignored
///   RULE   := POINT [':' INDEX] ['@rank' RANK] '=' ACTION
///   ACTION := 'crash' | 'stall' | 'exit:' CODE | 'enospc'
///
/// e.g. SDTRAIN_FAULTS="collective.before:8@rank1=stall;checkpoint.after_parts_write:4=crash".
/// A rule fires the first time its point is reached with its INDEX (any index when omitted) on its
/// RANK (any rank when omitted); the process then prints one line to stderr,
///   sdtrain: rank 1: fault point collective.before:8 fired: stall (rule 'collective.before:8@rank1=stall')
/// and carries out the action; the first three never return:
///   crash   _exit(kFaultCrashExitCode) at once, as kill -9 or a power cut would: no destructors,
///           no atexit handlers, nothing flushed or closed (files half-written stay so)
///   stall   the calling thread sleeps forever (a hung GPU, a deadlocked data worker); the
///           process only ends when it is killed (e.g. by the job's collective timeout)
///   exit:C  _exit(C), C in 0..255, as crash but with a chosen exit status (to rehearse how a
///           launcher or scheduler reacts to one)
///   enospc  (only at checkpoint.write) fault_point() returns true, and the caller makes its writes
///           fail as on a full disk (framework/io/atomic_file.h, ScopedFullDisk)
///
/// Cost: with no rule configured, a fault point is one load and one branch; names, rules and
/// strings are only looked at when some rule exists.
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sdtrain {

/// The places a rule can name. Adding one: a value here, its name and description in
/// fault_points.cpp, a section in docs/fault-injection.md.
enum class FaultPoint {
  /// `checkpoint.after_parts_write`: rank 0 has written and fsync'ed its parts' files
  /// (model.safetensors, ema.safetensors, its optimizer shard, ...) into the temporary folder of a
  /// checkpoint, before trainer_state.json, its rank file and the manifest. INDEX: the
  /// checkpoint's step. Only rank 0 reaches it.
  kCheckpointAfterPartsWrite,
  /// `checkpoint.write`: a rank is about to write its files of a checkpoint (the temporary folder
  /// exists). INDEX: the checkpoint's step. Every rank reaches it. The one point that takes the
  /// `enospc` action: that rank's writes of this checkpoint then fail as on a full disk.
  kCheckpointWrite,
  /// `collective.before`: just before a collective (allreduce, broadcast, barrier) on this
  /// rank's communicator, MPI or NCCL, at any world size. INDEX: the collective's sequence number
  /// on this rank, counting from 1; every rank issues the same sequence, and the MPI backend's
  /// collective-timeout messages name the same number.
  kCollectiveBefore,
  /// `step.after_backward`: after the backward pass of a micro-batch, before the optimizer
  /// update. INDEX: the optimizer step the micro-batch belongs to, counting from 1 and continuing
  /// across resumes (a run resumed from the checkpoint of step 4 starts at 5).
  kStepAfterBackward,
};

/// What a rule does when it fires.
enum class FaultAction { kCrash, kStall, kExit, kDiskFull };

/// The exit status of the `crash` action: the status a shell reports for a process killed by
/// SIGKILL (128 + 9).
inline constexpr int kFaultCrashExitCode = 137;

/// One parsed rule.
struct FaultRule {
  FaultPoint point = FaultPoint::kCollectiveBefore;
  std::optional<int64_t> index;  ///< fires only at this index; any index when empty
  std::optional<int> rank;       ///< fires only on this rank; any rank when empty
  FaultAction action = FaultAction::kCrash;
  int exit_code = kFaultCrashExitCode;  ///< the status of crash and exit:C
  std::string text;                     ///< the rule as written (trimmed)
};

/// The rule-syntax name of `point`, e.g. "collective.before".
const char* fault_point_name(FaultPoint point);

/// Parses `spec` (RULES above). `source` names where it came from ("SDTRAIN_FAULTS", "--fault")
/// for the error. Throws ConfigError naming the source, the rule and what was expected.
std::vector<FaultRule> parse_fault_rules(std::string_view spec, std::string_view source);

/// Replaces the active rules by those of SDTRAIN_FAULTS followed by those of `flag_specs` (the
/// --fault flags). Throws ConfigError on a malformed rule, leaving the active rules unchanged.
/// sdtrain calls it at start-up, so a typo ends the run before any work; a program that never
/// calls it reads SDTRAIN_FAULTS the first time it reaches a fault point (and throws there).
void configure_fault_points(const std::vector<std::string>& flag_specs = {});

/// This process's rank in the job, for rules with `@rank`: until it is set, such rules do not
/// fire and the fired line names no rank. ProcessGroup sets it when the process joins the job.
void set_fault_point_rank(int rank);

namespace detail {
/// 0: rules not read yet; 1: no rule; 2: some rule (see fault_points.cpp).
inline constexpr int kFaultPointsIdle = 1;
extern std::atomic<int> fault_points_state;
bool fault_point_reached(FaultPoint point, int64_t index);
}  // namespace detail

/// Marks fault point `point` at `index`: returns false at once unless a rule matches. A matching
/// crash, stall or exit rule never returns; a matching enospc rule (checkpoint.write only)
/// returns true, and the caller simulates the full disk.
inline bool fault_point(FaultPoint point, int64_t index) {
  if (detail::fault_points_state.load(std::memory_order_acquire) != detail::kFaultPointsIdle) {
    return detail::fault_point_reached(point, index);
  }
  return false;
}

}  // namespace sdtrain
