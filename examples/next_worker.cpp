// The second stage of the sample pipeline: turns the number SampleWorker
// computed into a small report. A result with a "nextWorkerType" field
// would route the flow on; this one ends it.
#include <cmath>

#include <nlohmann/json.hpp>

#include "mw/worker.hpp"

struct Report {
  double value = 0;
  double rounded = 0;
  std::string sign;
  MSGPACK_DEFINE_MAP(value, rounded, sign)
};

int main(int argc, char** argv) {
  return mw::run_worker(argc, argv, {.type = "nextworker", .next = ""}, [](const mw::Job& job) {
    const double value = job.payload.as<double>();
    Report report{value, std::round(value * 1000) / 1000, value < 0 ? "negative" : "non-negative"};
    return mw::Payload::of(report);
  });
}
