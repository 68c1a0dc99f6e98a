// commands.hpp — the subcommands of `mw`, one file each.
//
// Each takes the arguments after the subcommand name (argv[0] is the
// subcommand) and returns the process exit code. Errors are thrown as
// mw::Error or cxxopts exceptions; main() prints them as one line.
#pragma once

#include <string>
#include <string_view>

#include <cxxopts.hpp>

namespace mw::cli {

// The exit status of mw result and mw cancel when the broker does not know a
// flow (never submitted, or its outcome is no longer kept): not the same as
// a flow that failed or had ended already (1) or goes on (3).
inline constexpr int kExitUnknownFlow = 4;

int submit(int argc, char** argv);
int status(int argc, char** argv);
int listen(int argc, char** argv);
int bench(int argc, char** argv);
int bench_entities(int argc, char** argv);  // mw bench --entities
int dead(int argc, char** argv);   // mw dead: list dead jobs
int retry(int argc, char** argv);  // mw retry: replay dead jobs
int schedule(int argc, char** argv);  // mw schedule: periodic jobs
int flows(int argc, char** argv);     // mw flows: unfinished flows
int cancel(int argc, char** argv);    // mw cancel: cancel unfinished flows
int result(int argc, char** argv);    // mw result: how a flow ended
// create, get, find, update, patch, remove
int entity(std::string_view method, int argc, char** argv);

// The option group of words given by place (ENDPOINT, ID …): parse_or_help
// leaves it out of --help, whose usage line names them.
inline constexpr const char* kPositionalGroup = "positional";

// Adds --broker (default $MW_BROKER, then tcp://127.0.0.1:5555) and -h/--help.
void add_common_options(cxxopts::Options& options);

// Parses; prints help and returns true when --help was given.
// Throws mw::Error for arguments nobody asked for.
bool parse_or_help(cxxopts::Options& options, int argc, char** argv, cxxopts::ParseResult& out);

// Reads all of standard input (for `-` arguments).
std::string read_stdin();

}  // namespace mw::cli
