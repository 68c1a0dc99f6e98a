// The seed's SampleWorker: sin(x) of a number, an error for anything else;
// the result goes on to the next worker ("nextworker" unless --next says
// otherwise).
//
//   ./sample_worker --broker tcp://127.0.0.1:5555
//   mw submit sampleworker 0.5 --wait
#include <cmath>

#include "mw/worker.hpp"

int main(int argc, char** argv) {
  return mw::run_worker(argc, argv, {.type = "sampleworker", .next = "nextworker"}, [](const mw::Job& job) {
    const auto input = job.payload.to_json();
    if (!input.is_number()) throw mw::JobError("The input is not a number", /*retryable=*/false);
    const double result = std::sin(input.get<double>());
    if (std::isnan(result)) throw mw::JobError("The result is not a number", /*retryable=*/false);
    return mw::Payload::of(result);
  });
}
