#pragma once
// The libFuzzer entry point every target defines. In the fuzz build (launch/fuzz/run_fuzzers.sh,
// clang with -fsanitize=fuzzer) libFuzzer drives it; in the normal build replay_main.cpp calls it
// on each file of the regression corpus, so CI replays every input a fuzzer ever found.
//
// A target feeds the bytes to one reader of outside input and catches the errors that reader
// documents for bad input (ConfigError, FormatError, DataError): anything else — another
// exception, a crash, a sanitizer report, a hang, an allocation beyond the limit — is a finding.
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
