#include "mw/worker.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <cxxopts.hpp>

#include "mw/log.hpp"
#include "mw/options.hpp"
#include "mw/ring_deque.hpp"
#include "mw/spin_poll.hpp"
#include "mw/wire.hpp"
#include "peer_socket.hpp"

namespace mw {
namespace {

using Clock = std::chrono::steady_clock;

// How long a handler runs before the keeper sends the DONEs queued before
// it, and how often a turn of inline jobs looks for a stop.
constexpr auto kCheckEvery = std::chrono::milliseconds(1);
// A job's PROGRESS values leave at most this often; newer ones replace the
// one that waits.
constexpr auto kProgressEvery = std::chrono::milliseconds(100);

// The longest error text a FAIL carries (half the broker's message limit
// when that is less); longer ones are cut at a UTF-8 character boundary
// and end with "…".
constexpr std::size_t kMaxErrorBytes = 4096;

// `max_message_bytes`: the broker's limit (0: not known), which a FAIL must
// fit in with room to spare.
void shorten_error(std::string& error, std::uint64_t max_message_bytes) {
  std::size_t most = kMaxErrorBytes;
  if (max_message_bytes) most = std::min<std::size_t>(most, max_message_bytes / 2);
  if (error.size() > most) error = shortened(error, most);
}

// One run of a job: its id and attempt. A job taken back from this worker
// (an expired lease) may come back to it while the first run goes on.
using RunKey = std::pair<std::uint64_t, std::uint32_t>;

}  // namespace

// What a handler thread hands back to the I/O thread. Outside the
// anonymous namespace because Worker::Impl, a class of the header, keeps
// queues of them (GCC warns of a member whose type has internal linkage).
namespace worker_detail {
struct Completion {
  std::uint64_t job_id = 0;
  std::uint32_t attempt = 0;  // the JOB's, quoted in the answer (0: not said)
  bool ok = true;
  Payload result;
  std::optional<std::string> next;  // from nextWorkerType; "" ends the flow
  std::string error;
  bool retryable = true;
  bool cancelled = false;  // its flow was cancelled: reported as such, whatever the handler did
  bool handed_back = false;  // JobHandedBack: no answer while stopping (error says why)
  std::uint64_t connection = 0;  // the connection (Impl::connection_) its job came on
};
}  // namespace worker_detail

namespace {

using worker_detail::Completion;

// What a worker reports for a job whose flow was cancelled (the broker
// drops it; it only frees the credit).
constexpr std::string_view kCancelledError = "cancelled";

Completion cancelled_completion(std::uint64_t job_id, std::uint32_t attempt) {
  Completion c;
  c.job_id = job_id;
  c.attempt = attempt;
  c.ok = false;
  c.cancelled = true;
  c.error = kCancelledError;
  c.retryable = false;
  return c;
}

bool is_msgpack_map(const std::string& bytes) {
  if (bytes.empty()) return false;
  const auto b = static_cast<unsigned char>(bytes[0]);
  return (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
}

// Pulls the seed's `nextWorkerType` out of a map result: it is a routing
// instruction for the broker, not data for the next worker (which would
// otherwise route its own result by it again).
void extract_next_worker_type(Completion& c) {
  if (!is_msgpack_map(c.result.bytes())) return;
  auto handle = c.result.unpack();
  const msgpack::object& map = handle.get();
  const msgpack::object_kv* found = nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == kNextWorkerTypeField) {
      found = &kv;
      break;
    }
  }
  if (!found) return;
  if (found->val.type == msgpack::type::STR) {
    c.next = std::string(found->val.via.str.ptr, found->val.via.str.size);
  } else if (found->val.type == msgpack::type::NIL) {
    c.next = std::string();
  } else {
    throw JobError("nextWorkerType must be a string or null", false);
  }
  if (!c.next->empty())
    if (auto problem = type_name_problem(*c.next); !problem.empty()) throw JobError("nextWorkerType: " + problem, false);
  msgpack::sbuffer out;
  msgpack::packer<msgpack::sbuffer> packer(out);
  packer.pack_map(map.via.map.size - 1);
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (&kv == found) continue;
    packer.pack(kv.key);
    packer.pack(kv.val);
  }
  c.result = Payload::adopt(std::string(out.data(), out.size()));
}

Completion execute(const Handler& handler, const Job& job) {
  Completion c;
  c.job_id = job.id;
  c.attempt = job.attempt;
  try {
    c.result = handler(job);
    extract_next_worker_type(c);
  } catch (const JobError& e) {
    c.ok = false;
    c.error = e.what();
    c.retryable = e.retryable();
  } catch (const JobHandedBack& e) {
    c.ok = false;
    c.handed_back = true;
    c.error = e.what();
  } catch (const Error& e) {
    // Payload conversion errors: the input will not convert next time either.
    c.ok = false;
    c.error = e.what();
    c.retryable = e.code() != ErrorCode::BadRequest;
  } catch (const std::exception& e) {
    c.ok = false;
    c.error = e.what();
  } catch (...) {
    c.ok = false;
    c.error = "handler threw a non-standard exception";
  }
  if (job.cancel.stop_requested()) return cancelled_completion(job.id, job.attempt);
  return c;
}

std::int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

}  // namespace

void Job::report_progress(const Payload& value) const {
  if (value.size() > kMaxProgressBytes)
    throw Error("a job's progress is at most " + std::to_string(kMaxProgressBytes) + " bytes of msgpack; this one is " +
                    std::to_string(value.size()),
                ErrorCode::TooLarge);
  if (progress_sink) progress_sink->progress(id, attempt, value.bytes());
}

class Worker::Impl final : public detail::ProgressSink {
 public:
  Impl(WorkerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (options_.types.empty()) throw UsageError("a worker needs at least one type (--type)");
    for (const auto& t : options_.types)
      if (auto problem = type_name_problem(t); !problem.empty()) throw UsageError("--type: " + problem);
    if (!options_.next.empty())
      if (auto problem = type_name_problem(options_.next); !problem.empty()) throw UsageError("--next: " + problem);
    if (options_.concurrency == 0 || options_.concurrency > kMaxCredit)
      throw UsageError("--concurrency must be between 1 and 10000");
    check_spin_us(options_.spin_us, "--spin-us");
    if (options_.threads == 0 || options_.threads > 1024)
      throw UsageError("--threads must be between 1 and 1024");
    if (!handler_) throw Error("a worker needs a handler", ErrorCode::BadRequest);
    check_broker_address(options_.broker);  // before any "serving" line
    running_slots_ = std::make_unique<std::atomic<std::uint64_t>[]>(options_.threads);
    running_attempts_ = std::make_unique<std::atomic<std::uint32_t>[]>(options_.threads);
    if (wake_fd_ < 0) throw Error("eventfd failed");
    if (options_.name.empty()) options_.name = joined_types(options_.types) + "@" + host_name();
    // Legal (a result's nextWorkerType can end the loop) but usually a slip.
    if (std::find(options_.types.begin(), options_.types.end(), options_.next) != options_.types.end())
      log(LogLevel::warn, "worker",
          "--next " + options_.next + " is this worker's own type: every result comes back to it as a new job, "
          "until a result's nextWorkerType sends it elsewhere or the flow dies at the broker's --max-stages "
          "(mw cancel FLOW stops one sooner)");
  }

  ~Impl() {
    stop_threads();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  void run(const StopSignal& stop) {
    stop_ = &stop;
    stopping_ = false;
    zmq::context_t context(1);
    detail::PeerSocket peer(context, options_.broker);
    // This thread owns the socket, except while it runs a handler inline:
    // then the keeper may take it (start_keeper).
    std::unique_lock socket_lock(socket_mutex_);
    struct StopHelpers {
      Impl& self;
      ~StopHelpers() {
        self.stop_keeper();
        self.stop_threads();
      }
    } stop_helpers{*this};
    if (inline_) {
      start_keeper(peer);
    } else {
      start_threads();
    }
    register_with(peer);

    bool stopping = false;
    SpinPoll waiter(std::chrono::microseconds(options_.spin_us));
    for (;;) {
      const std::int64_t beat = heartbeat_ms_.load();
      const std::int64_t liveness_ms = beat * kHeartbeatLiveness;
      const std::int64_t until_heartbeat = beat - ms_since(last_sent_heartbeat_);
      const std::int64_t until_dead = liveness_ms - ms_since(last_heard_);
      auto wait = std::clamp<std::int64_t>(std::min(until_heartbeat, until_dead), 0, beat);
      if (!local_.empty()) wait = 0;
      if (auto progress_due = send_progress(peer)) wait = std::min<std::int64_t>(wait, progress_due->count());
      send_ready_if_due(peer, stopping);
      peer.flush();  // the DONEs of the last turn, as one BATCH when the broker takes them
      zmq::pollitem_t items[] = {
          {peer.socket().handle(), 0, ZMQ_POLLIN, 0},
          {nullptr, wake_fd_, ZMQ_POLLIN, 0},
          {nullptr, stop.fd(), ZMQ_POLLIN, 0},
      };
      // Idle for a whole wait: the keeper need not watch for held-back DONEs
      // (while busy it keeps watching, so a busy worker never wakes it).
      if (waiter.poll(items, stopping ? 2 : 3, std::chrono::milliseconds(wait)) == 0 && wait > 0) watch_flush_ = false;

      if (!stopping && (items[2].revents & ZMQ_POLLIN)) {
        stopping = stopping_ = true;
        // Jobs not started go back to the broker (with DISCONNECT below).
        local_.clear();
        std::lock_guard lock(mutex_);
        pending_.clear();
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t count;
        [[maybe_unused]] auto n = ::read(wake_fd_, &count, sizeof count);
      }
      send_completions(peer);

      // One clock reading for all that came (a BATCH brings up to 64).
      bool heard = false;
      while (auto in = peer.try_recv()) {
        heard = true;
        if (!handle(peer, *in, stopping)) break;
      }
      if (heard) last_heard_ = Clock::now();
      if (stopping) {
        std::lock_guard lock(mutex_);
        if (running_ == 0 && completed_.empty()) break;
      }
      if (ms_since(last_sent_heartbeat_) >= heartbeat_ms_.load()) {
        peer.send(Command::Heartbeat);
        last_sent_heartbeat_ = Clock::now();
      }
      if (ms_since(last_heard_) > liveness_ms) {
        warn_of_silence(liveness_ms);
        reconnect(peer);
      }
      // Last in the turn: the liveness check above must only ever follow a
      // drain of the socket, never a long handler.
      if (!stopping) run_inline(peer, socket_lock, stop);
      if (keeper_failed_.load(std::memory_order_acquire)) std::rethrow_exception(keeper_error_);
    }
    send_completions(peer);
    peer.send(Command::Disconnect);  // after the queued DONEs: send() keeps the order
    // Give the DONEs and the DISCONNECT a moment to leave before the socket closes.
    peer.socket().set(zmq::sockopt::linger, 1000);
  }

  Counters counters() const {
    return {done_.load(), failed_.load(), registrations_.load(), cancelled_.load(), handed_back_.load()};
  }

 private:
  // Returns false when the socket was replaced and the drain must stop.
  bool handle(detail::PeerSocket& peer, detail::Inbound& in, bool stopping) {
    try {
      switch (in.command) {
        case Command::Job: {
          if (stopping) return true;  // handed back by our DISCONNECT
          const auto header = wire::decode_job(in.header);
          Job job = inline_ ? reused_job() : Job{};
          job.id = header.job_id;
          job.flow_id = header.flow_id;
          job.type = header.type;
          job.attempt = header.attempt;
          job.entity = header.entity;
          std::string payload_bytes = std::move(job.payload).take_bytes();
          payload_bytes.assign(in.payload.data<char>(), in.payload.size());
          job.payload = Payload::adopt(std::move(payload_bytes));
          job.progress_sink = this;
          if (inline_) {
            local_.push_back(std::move(job));
            return true;
          }
          {
            std::lock_guard lock(mutex_);
            pending_.push_back(std::move(job));
          }
          work_ready_.notify_one();
          return true;
        }
        case Command::Welcome: {
          const auto welcome = wire::decode_welcome(in.header);
          heartbeat_ms_.store(std::clamp<std::uint32_t>(welcome.heartbeat_ms, 10, 600'000));
          peer.take_welcome(welcome);
          // Said once per connection: when the worker is first in service,
          // and again after each time it lost its broker.
          log(LogLevel::info, "worker",
              options_.name + (welcomes_++ == 0 ? ": registered with the broker at " : ": registered again with the broker at ") +
                  options_.broker);
          silent_attempts_ = 0;
          broker_takes_progress_ = welcome.progress ? Support::Yes : Support::No;
          keeper_wake_.notify_all();  // it may be sleeping on the default interval
          return true;
        }
        case Command::Heartbeat:
          return true;
        case Command::Cancel:
          cancel_job(peer, wire::decode_cancel(in.header).job_id);
          return true;
        case Command::Disconnect:
          // The broker does not know us (it restarted) or is going away:
          // register again on a fresh connection.
          log(LogLevel::info, "worker", options_.name + ": broker asked us to reconnect");
          reconnect(peer);
          return false;
        case Command::Error: {
          const auto error = wire::decode_error(in.header);
          log(LogLevel::warn, "worker", options_.name + ": broker says " + std::to_string(static_cast<int>(error.code)) +
                                            " " + std::string(error.message));
          if (error.code == ErrorCode::NotRegistered) {
            reconnect(peer);
            return false;
          }
          return true;
        }
        default:
          log(LogLevel::warn, "worker", options_.name + ": ignoring unexpected " +
                                            std::string(command_name(in.command)) + " from the broker");
          return true;
      }
    } catch (const wire::DecodeError& e) {
      log(LogLevel::warn, "worker", options_.name + ": skipping malformed message from broker: " + e.what());
      return true;
    }
  }

  // A broker that went quiet is worth a line each time; one that never
  // answers (not started yet, a wrong --broker) is said at the 1st, 2nd,
  // 4th, 8th... silent attempt, so a worker left waiting does not fill its
  // log with one line per liveness period.
  void warn_of_silence(std::int64_t liveness_ms) {
    const auto attempt = ++silent_attempts_;
    if (attempt == 1 && welcomes_ > 0) {
      log(LogLevel::warn, "worker", options_.name + ": no word from the broker at " + options_.broker + " for " +
                                        std::to_string(liveness_ms) + " ms; reconnecting");
    } else if ((attempt & (attempt - 1)) == 0) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%.1f", static_cast<double>(liveness_ms * attempt) / 1000);
      log(LogLevel::warn, "worker", options_.name + ": no answer from a broker at " + options_.broker + " for " +
                                        seconds + " s: " + std::string(kNoBrokerHint) + "; still trying");
    }
  }

  void register_with(detail::PeerSocket& peer) {
    zmq::message_t hello =
        wire::encode(wire::Hello{kRoleWorker, options_.name, kProtocolVersion, detail::PeerSocket::kBatchAccepted,
                                  /*inline_payloads=*/true});
    peer.send(Command::Hello, &hello);
    send_ready(peer);
    last_heard_ = Clock::now();
    last_sent_heartbeat_ = Clock::now();
    ++registrations_;
  }

  // READY, also to change the credit: --concurrency less the handlers still
  // busy with jobs of an earlier connection (0 while they fill it).
  // A handler's Job::report_progress: kept as the job's newest value, sent
  // by whoever holds the socket (send_progress). Any thread, also a
  // std::stop_callback run with mutex_ held (a cancel): so it takes only
  // progress_mutex_, which is never held around user code or another lock.
  void progress(std::uint64_t job_id, std::uint32_t attempt, std::string msgpack_bytes) override {
    bool newly_pending;
    {
      std::lock_guard lock(progress_mutex_);
      // Only while the job's handler runs. Its slot is cleared before its
      // answer is queued, and the answer takes the job's entry out under
      // this lock (finish_progress): no value outlives the run.
      if (!runs_now(job_id, attempt)) return;
      auto& state = progress_[{job_id, attempt}];
      state.value = std::move(msgpack_bytes);
      newly_pending = !state.pending;
      state.pending = true;
      progress_used_.store(true, std::memory_order_relaxed);
      progress_pending_.store(true, std::memory_order_release);
    }
    if (!newly_pending) return;  // its wake-up is on its way
    if (inline_) {
      keeper_wake_.notify_one();  // the I/O thread is in this handler (the keeper also looks every kProgressEvery)
    } else {
      const std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    }
  }

  // Whether this run of the job (a job whose lease expired may run here
  // twice) is in a handler now. A slot's attempt is stored before its id and
  // read after it: a slot taken over meanwhile reads as "not this run".
  bool runs_now(std::uint64_t job_id, std::uint32_t attempt) const noexcept {
    for (std::uint32_t i = 0; i < options_.threads; ++i)
      if (running_slots_[i].load(std::memory_order_acquire) == job_id &&
          running_attempts_[i].load(std::memory_order_acquire) == attempt)
        return true;
    return false;
  }

  // Sends the PROGRESS values that are due (kProgressEvery after the job's
  // last one). Returns how long until the next held-back one is due, or
  // nullopt when none waits. Socket held.
  std::optional<std::chrono::milliseconds> send_progress(detail::PeerSocket& peer) {
    if (!progress_pending_.load(std::memory_order_acquire)) return std::nullopt;
    // Until this connection's WELCOME says whether the broker takes them,
    // they wait.
    if (broker_takes_progress_ == Support::Unknown) return std::chrono::duration_cast<std::chrono::milliseconds>(kProgressEvery);
    const auto now = Clock::now();
    std::vector<std::pair<RunKey, std::string>> due;
    std::optional<std::chrono::milliseconds> next;
    {
      std::lock_guard lock(progress_mutex_);
      for (auto& [run, state] : progress_) {
        if (!state.pending) continue;
        const auto since = now - state.sent_at;
        if (since >= kProgressEvery) {
          due.emplace_back(run, std::move(state.value));
          state.pending = false;
          state.sent_at = now;
        } else {
          const auto left = std::chrono::ceil<std::chrono::milliseconds>(kProgressEvery - since);
          next = next ? std::min(*next, left) : left;
        }
      }
      progress_pending_.store(next.has_value(), std::memory_order_release);
    }
    for (auto& [run, bytes] : due) send_one_progress(peer, run, bytes);
    return next;
  }

  // The run of `job_id` has ended and its answer goes next: a value of it
  // that still waits goes first, so the last one a handler reported is
  // always seen (when the answer is for this connection's broker).
  void finish_progress(detail::PeerSocket& peer, RunKey run, bool send_waiting) {
    if (!progress_used_.load(std::memory_order_relaxed)) return;  // a worker that never reports pays nothing
    std::string waiting;
    {
      std::lock_guard lock(progress_mutex_);
      const auto it = progress_.find(run);
      if (it == progress_.end()) return;
      if (it->second.pending) waiting = std::move(it->second.value);
      progress_.erase(it);
    }
    if (send_waiting && !waiting.empty() && broker_takes_progress_ == Support::Yes)
      send_one_progress(peer, run, waiting);
  }

  void send_one_progress(detail::PeerSocket& peer, RunKey run, const std::string& bytes) {
    if (broker_takes_progress_ != Support::Yes) {
      if (!std::exchange(said_progress_unsupported_, true))
        log(LogLevel::warn, "worker", options_.name + ": the broker at " + options_.broker +
                                          " takes no PROGRESS (an older mw-broker): jobs' progress is not sent");
      return;
    }
    zmq::message_t header = wire::encode(wire::JobProgress{run.first, run.second});
    zmq::message_t value(bytes.data(), bytes.size());
    // A message over the broker's limit would make ZeroMQ drop the connection.
    if (const auto limit = peer.max_message_bytes();
        limit != 0 && detail::PeerSocket::message_bytes(&header, &value) > limit) {
      if (!std::exchange(said_progress_too_large_, true))
        log(LogLevel::warn, "worker", options_.name + ": a progress of " + std::to_string(bytes.size()) +
                                          " bytes is over the broker's --max-message-bytes (" +
                                          std::to_string(limit) + "): such values are not sent");
      return;
    }
    peer.send(Command::Progress, &header, &value);
  }

  void send_ready(detail::PeerSocket& peer) {
    wire::Ready ready;
    for (const auto& t : options_.types) ready.types.push_back(t);
    ready.next = options_.next;
    // A stopping worker that registers again (its broker restarted during
    // the stop) takes no new jobs: it only answers for the runs it has.
    ready.credit = stop_asked() ? 0 : options_.concurrency - std::min(carried_over_, options_.concurrency);
    const std::string host = host_name();
    ready.host = host;
    ready.pid = static_cast<std::uint32_t>(::getpid());
    ready.cancel = true;
    zmq::message_t header = wire::encode(ready);
    peer.send(Command::Ready, &header);
  }

  void reconnect(detail::PeerSocket& peer) {
    {
      // The broker requeues whatever it had given us; do not start those.
      local_.clear();
      std::lock_guard lock(mutex_);
      pending_.clear();
      ++connection_;
      broker_takes_progress_ = Support::Unknown;  // until the new WELCOME
      // Handlers busy now (or done and not yet answered) hold jobs the new
      // connection does not know: each keeps its slot of --concurrency
      // until its answer is sent (report), so the broker does not give
      // this worker more than it can run.
      carried_over_ = inline_ ? (inline_running_id_ != 0 ? 1 : 0)
                              : running_ + static_cast<std::uint32_t>(completed_.size());
      ready_due_ = false;  // the READY below says the credit as it is now
    }
    peer.reset();
    register_with(peer);
  }

  void send_completions(detail::PeerSocket& peer) {
    // sending_ is a member so this per-wake-up call does not allocate a
    // fresh queue every time; it is empty between calls, and the two swap
    // their slots back and forth.
    auto& batch = sending_;
    {
      std::lock_guard lock(mutex_);
      batch.swap(completed_);
    }
    // Cleared on every way out, as the local deque it replaces was.
    struct ClearOnExit {
      RingDeque<Completion>& d;
      ~ClearOnExit() { d.clear(); }
    } clear_on_exit{batch};
    for (auto& c : batch) report(peer, c);
  }

  // Sends a run's answer. A run carried over from an earlier connection
  // (its handler was busy when the worker registered again) answers to a
  // broker that does not hold its job for this connection: it requeued the
  // job, or gave it back here. Each copy queued here is one such record,
  // and gets the run's answer instead of running again. With none, an
  // answer would only be stale (a copy already running answers for
  // itself): none is sent. Then the run's slot is given back, with one
  // READY for all the runs of a turn (send_ready_if_due).
  void report(detail::PeerSocket& peer, Completion& c) {
    finish_progress(peer, {c.job_id, c.attempt}, /*send_waiting=*/c.connection == connection_);
    if (c.connection == connection_) {  // the usual case
      send_answer(peer, c);
      return;
    }
    count(c);
    for (const std::uint32_t attempt : take_waiting_copies(c.job_id)) {
      c.attempt = attempt;
      send_answer(peer, c, /*counted=*/true);
    }
    if (carried_over_ > 0) {
      --carried_over_;
      ready_due_ = true;
    }
  }

  void send_ready_if_due(detail::PeerSocket& peer, bool stopping) {
    if (!ready_due_ || stopping) return;
    ready_due_ = false;
    send_ready(peer);
  }

  // Sends the DONE or FAIL of a run, and counts it unless `counted`
  // already (one run may answer several copies of its job).
  void send_answer(detail::PeerSocket& peer, Completion& c, bool counted = false) {
    if (hands_back(c)) {
      // No answer: the DISCONNECT that ends this stop gives it back.
      log(LogLevel::info, "worker", options_.name + ": job " + std::to_string(c.job_id) +
                                        " handed back unfinished (" + c.error + "); another worker runs it");
      if (!counted) count(c);
      return;
    }
    if (c.cancelled) {
      zmq::message_t header = wire::encode(wire::Fail{c.job_id, c.error, false, c.attempt});
      peer.send(Command::Fail, &header);
      if (!counted) count(c);
      return;
    }
    if (c.ok) {
      zmq::message_t header = wire::encode(
          wire::Done{c.job_id, c.next ? std::optional<std::string_view>(*c.next) : std::nullopt, c.attempt});
      zmq::message_t result(c.result.bytes().data(), c.result.size());
      const std::size_t bytes = detail::PeerSocket::message_bytes(&header, &result);
      if (const auto limit = peer.max_message_bytes(); limit == 0 || bytes <= limit) {
        peer.send(Command::Done, &header, &result);
        if (!counted) count(c);
        return;
      }
      // The broker would drop the connection (and with it this job, to be
      // retried forever): the job fails instead, saying why.
      c.ok = false;
      c.retryable = false;
      c.error = "the result (" + std::to_string(bytes) + " bytes) is larger than the broker's --max-message-bytes (" +
                std::to_string(peer.max_message_bytes()) + ")";
    }
    {
      // An error text is one line for people, not a payload: it must fit a header.
      shorten_error(c.error, peer.max_message_bytes());
      zmq::message_t header = wire::encode(wire::Fail{c.job_id, c.error, c.retryable, c.attempt});
      peer.send(Command::Fail, &header);
      if (!counted) count(c);
    }
  }

  // Takes every copy of `job_id` that waits to start, inline (local_) or for
  // a handler thread (pending_), and returns their attempts: each copy is a
  // delivery of its own, answered with its own attempt. Socket held.
  std::vector<std::uint32_t> take_waiting_copies(std::uint64_t job_id) {
    std::vector<std::uint32_t> attempts;
    const auto is_copy = [&attempts, job_id](const Job& job) {
      if (job.id != job_id) return false;
      attempts.push_back(job.attempt);
      return true;
    };
    erase_if(local_, is_copy);
    std::lock_guard lock(mutex_);
    erase_if(pending_, is_copy);
    return attempts;
  }

  // A JobHandedBack while stopping: answered by no DONE or FAIL. (An
  // inline handler returns before the I/O thread has seen the stop.)
  bool hands_back(const Completion& c) const noexcept { return c.handed_back && stop_asked(); }

  // The stop has fired, whether or not the I/O thread has seen it yet.
  bool stop_asked() const noexcept { return stopping_ || (stop_ && stop_->fired()); }

  void count(const Completion& c) {
    if (hands_back(c)) {
      ++handed_back_;
    } else if (c.cancelled) {
      ++cancelled_;
    } else if (c.ok) {
      ++done_;
    } else {
      ++failed_;
    }
  }

  // CANCEL: the job's flow was cancelled. Not started: it is dropped and
  // reported at once, so the broker frees its credit. Running: its token is
  // stopped, and the handler's report says "cancelled" (execute). Not here
  // (it ended already): nothing to do. Called by whoever holds the socket:
  // the I/O thread, or the keeper while an inline handler runs (local_ and
  // the inline_running_ pair are only touched with the socket held).
  void cancel_job(detail::PeerSocket& peer, std::uint64_t job_id) {
    // Every copy: after a lease expired the broker may have sent the same
    // job here again, and each copy holds a credit until it is answered.
    const std::vector<std::uint32_t> dropped = take_waiting_copies(job_id);
    bool stopped = false;
    if (inline_running_id_ == job_id) stopped = inline_running_stop_.request_stop();
    {
      // Stopped under the lock: a handler thread takes its entry out (and
      // may reuse its source for its next job) only under it.
      std::lock_guard lock(mutex_);
      for (const RunningJob& r : running_jobs_)
        if (r.job_id == job_id) stopped |= r.stop->request_stop();
    }
    for (const std::uint32_t attempt : dropped) {
      Completion c = cancelled_completion(job_id, attempt);
      c.connection = connection_;
      send_answer(peer, c);
    }
    if (!dropped.empty() || stopped)
      log(LogLevel::info, "worker", options_.name + ": job " + std::to_string(job_id) + " cancelled" +
                                        (stopped ? "; its handler was asked to stop" : " before it started"));
  }

  // threads == 1: jobs run here, on the socket's thread, so a job costs no
  // hand-off between threads (two wake-ups less per job, which is most of
  // the latency of a short job). The socket is released to the keeper for
  // the duration of each handler, so long jobs do not silence heartbeats.
  // At most one credit's worth per turn, so heartbeats and new messages
  // are looked at between batches.
  // The DONEs of a turn go out together (a BATCH of many costs about what
  // one does), when the turn ends. So that a slow job does not hold back
  // the results before it, a job that starts while DONEs wait asks the
  // keeper to watch: the keeper sends them once one handler has run for
  // kCheckEvery. Between jobs, once kCheckEvery has passed, a stop is
  // looked for (not after every job: asking the descriptor is a system call).
  void run_inline(detail::PeerSocket& peer, std::unique_lock<std::mutex>& socket_lock, const StopSignal& stop) {
    auto last_check = Clock::now();
    for (std::uint32_t n = 0; n < options_.concurrency && !local_.empty(); ++n) {
      if (n > 0 && Clock::now() - last_check >= kCheckEvery) {
        if (stop.fired()) return;  // the loop hands the rest back
        last_check = Clock::now();
      }
      if (peer.has_queued() && !watch_flush_) {
        {
          std::lock_guard lock(keeper_mutex_);
          watch_flush_ = true;
        }
        keeper_wake_.notify_one();
      }
      ++handler_seq_;
      Job job = std::move(local_.front());
      local_.pop_front();
      // Read by the keeper only while it holds the socket, so only while
      // this handler runs: no lock of their own.
      // One source serves job after job until a cancel uses it up: no
      // allocation per job.
      inline_running_id_ = job.id;
      running_attempts_[0].store(job.attempt, std::memory_order_release);
      running_slots_[0].store(job.id, std::memory_order_release);
      if (!inline_running_stop_.stop_possible() || inline_running_stop_.stop_requested())
        inline_running_stop_ = std::stop_source();
      job.cancel = inline_running_stop_.get_token();
      const std::uint64_t started_on = connection_;
      socket_lock.unlock();
      Completion c = execute(handler_, job);
      socket_lock.lock();
      // The keeper failed (in a reconnect, say) while the handler ran: the
      // socket may be gone, and its reason is the one to report.
      if (keeper_failed_.load(std::memory_order_acquire)) std::rethrow_exception(keeper_error_);
      inline_running_id_ = 0;
      running_slots_[0].store(0, std::memory_order_release);
      c.connection = started_on;
      report(peer, c);  // the job's waiting progress first
      keep_for_reuse(std::move(job));
    }
  }

  // Inline mode keeps the Jobs whose handlers have run, and fills the next
  // JOBs into them: their type, entity and payload strings keep their
  // buffers, so a steady stream of jobs allocates none for them. Only with
  // socket_mutex_ held, as local_.
  Job reused_job() {
    if (spare_jobs_.empty()) return Job{};
    Job job = std::move(spare_jobs_.back());
    spare_jobs_.pop_back();
    return job;
  }
  void keep_for_reuse(Job&& job) {
    if (spare_jobs_.size() >= kKeptSpareJobs) return;
    job.cancel = {};  // no hold on the source of a handler that has ended
    // A large payload's buffer is not kept: 64 spares of 16 MiB each would
    // hold a gigabyte for a worker that once saw a burst of them.
    if (job.payload.bytes().capacity() > kKeptPayloadBytes) job.payload = Payload();
    spare_jobs_.push_back(std::move(job));
  }

  // The keeper sends HEARTBEATs while an inline handler holds the I/O
  // thread, the DONEs that wait behind a slow handler (run_inline), and
  // reads the socket during a long one (read_during_handler). It
  // only ever try-locks the socket: the I/O thread lets go of it only while
  // a handler runs, and heartbeats by itself otherwise.
  void start_keeper(detail::PeerSocket& peer) {
    {
      std::lock_guard lock(keeper_mutex_);
      keeper_stopping_ = false;
    }
    keeper_ = std::jthread([this, &peer] {
      // What it throws (a new socket that cannot be made, say) is thrown
      // again on the I/O thread, which ends the worker with the reason.
      try {
        keep(peer);
      } catch (...) {
        keeper_error_ = std::current_exception();
        keeper_failed_.store(true, std::memory_order_release);
      }
    });
  }

  // The keeper's loop (start_keeper).
  void keep(detail::PeerSocket& peer) {
    std::unique_lock lock(keeper_mutex_);
    std::uint64_t seen_handler = 0;
    std::uint64_t seen_handler_for_reading = 0;
    while (!keeper_stopping_) {
      // A quarter interval: a heartbeat is never more than that late.
      auto period = watch_flush_ ? std::chrono::duration_cast<std::chrono::milliseconds>(kCheckEvery)
                                 : std::chrono::milliseconds(heartbeat_ms_.load() / 4 + 1);
      // Reporting jobs: a value never waits longer than it must, even when
      // its wake-up came just before this wait began.
      if (progress_used_.load(std::memory_order_relaxed))
        period = std::min(period, std::chrono::duration_cast<std::chrono::milliseconds>(kProgressEvery));
      keeper_wake_.wait_for(lock, period);
      if (keeper_stopping_) break;
      std::unique_lock socket(socket_mutex_, std::try_to_lock);
      if (!socket.owns_lock()) continue;
      if (watch_flush_) {
        // The same handler as a period ago: it is a slow one, and the
        // DONEs before it have waited long enough.
        const std::uint64_t handler = handler_seq_.load();
        if (handler == seen_handler) peer.flush();
        seen_handler = handler;
      }
      if (ms_since(last_sent_heartbeat_) >= heartbeat_ms_.load()) {
        peer.send(Command::Heartbeat);
        last_sent_heartbeat_ = Clock::now();
      }
      // A long handler's progress goes out as it comes (the I/O thread is
      // inside the handler).
      if (progress_pending_.load(std::memory_order_acquire)) {
        (void)send_progress(peer);
        peer.flush();
      }
      // A handler that was already running a period ago is a long one:
      // read what came meanwhile, so a CANCEL for it stops it now, and a
      // restarted broker has this worker back now, rather than when it
      // ends. (Short jobs never get here: the I/O thread reads its own
      // socket between them.)
      const std::uint64_t handler = handler_seq_.load();
      if (handler == seen_handler_for_reading) read_during_handler(peer);
      seen_handler_for_reading = handler;
    }
  }

  // Keeper only, holding the socket while an inline handler runs (the I/O
  // thread is inside it, so local_ is free to touch): every message is
  // handled as the I/O thread would, in order. A JOB joins local_; a CANCEL
  // stops the running handler or drops a job not started; a DISCONNECT (a
  // restarted broker that does not know us) or ERROR 401 registers again on
  // a new socket now, so that the new broker has this worker back while the
  // handler runs: with the handler's slot held back from its credit (see
  // reconnect and report). A silence is left to the I/O thread, which first
  // sends the handler's answer: a broker that was only slow still takes it.
  void read_during_handler(detail::PeerSocket& peer) {
    bool heard = false;
    while (auto in = peer.try_recv()) {
      heard = true;
      // A stop is only seen by the I/O thread, between handlers. After a
      // reconnect, the rest is read from the new socket.
      handle(peer, *in, /*stopping=*/false);
    }
    if (heard) last_heard_ = Clock::now();
    // A dropped job's FAIL frees its credit at the broker: it goes now.
    if (peer.has_queued()) peer.flush();
  }

  void stop_keeper() {
    {
      std::lock_guard lock(keeper_mutex_);
      keeper_stopping_ = true;
    }
    keeper_wake_.notify_all();
    if (keeper_.joinable()) keeper_.join();
  }

  void start_threads() {
    shutting_down_ = false;
    for (std::uint32_t i = 0; i < options_.threads; ++i) threads_.emplace_back([this, i] { handler_loop(i); });
  }

  void stop_threads() {
    {
      std::lock_guard lock(mutex_);
      shutting_down_ = true;
      pending_.clear();
    }
    work_ready_.notify_all();
    threads_.clear();  // joins
  }

  void handler_loop(std::uint32_t slot) {
    // This thread's cancel source, reused until a cancel uses it up.
    std::stop_source stop;
    for (;;) {
      Job job;
      std::uint64_t started_on;
      {
        std::unique_lock lock(mutex_);
        work_ready_.wait(lock, [&] { return shutting_down_ || !pending_.empty(); });
        if (pending_.empty()) return;
        job = std::move(pending_.front());
        pending_.pop_front();
        started_on = connection_;
        ++running_;
        if (stop.stop_requested()) stop = std::stop_source();
        job.cancel = stop.get_token();
        running_jobs_.push_back({job.id, &stop});
        running_attempts_[slot].store(job.attempt, std::memory_order_release);
        running_slots_[slot].store(job.id, std::memory_order_release);
      }
      Completion c = execute(handler_, job);
      running_slots_[slot].store(0, std::memory_order_release);  // no progress of it from now on
      c.connection = started_on;
      bool wake;
      {
        std::lock_guard lock(mutex_);
        // By its source, not its job id: the same id may run twice here.
        const auto mine = std::find_if(running_jobs_.begin(), running_jobs_.end(),
                                       [&](const RunningJob& r) { return r.stop == &stop; });
        *mine = running_jobs_.back();
        running_jobs_.pop_back();
        completed_.push_back(std::move(c));
        --running_;
        // One wake-up per batch: the I/O thread takes every completion it finds.
        wake = completed_.size() == 1;
      }
      if (wake) {
        const std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
      }
    }
  }

  WorkerOptions options_;
  Handler handler_;
  int wake_fd_;
  const bool inline_ = options_.threads == 1;
  std::atomic<std::uint32_t> heartbeat_ms_{kDefaultHeartbeatMs};
  Clock::time_point last_heard_ = Clock::now();
  Clock::time_point last_sent_heartbeat_ = Clock::now();  // under socket_mutex_
  std::uint64_t welcomes_ = 0;         // WELCOMEs so far: one per connection that registered
  // Counts the connections made (reconnect); written with socket_mutex_
  // and mutex_ held, so either lets a thread read it.
  std::uint64_t connection_ = 0;
  // Handlers busy with jobs of an earlier connection, and whether a READY
  // is owed for the slots they gave back (socket_mutex_).
  std::uint32_t carried_over_ = 0;
  bool ready_due_ = false;
  std::uint64_t silent_attempts_ = 0;  // connections in a row that heard nothing in a liveness period

  // Inline mode (threads == 1): jobs received and not yet run; the I/O
  // thread's, or the keeper's while an inline handler runs (socket_mutex_).
  RingDeque<Job> local_;
  // Jobs kept for reuse (reused_job): enough for a worker's usual
  // concurrency, with payload buffers of at most 64 KiB.
  static constexpr std::size_t kKeptSpareJobs = 64;
  static constexpr std::size_t kKeptPayloadBytes = 64 * 1024;
  std::vector<Job> spare_jobs_;
  // The running inline handler's job and cancel source: whoever holds
  // socket_mutex_ owns them.
  std::uint64_t inline_running_id_ = 0;
  std::stop_source inline_running_stop_{std::nostopstate};
  std::mutex socket_mutex_;
  std::mutex keeper_mutex_;
  std::condition_variable keeper_wake_;
  bool keeper_stopping_ = false;
  std::exception_ptr keeper_error_;  // written before keeper_failed_ is set
  std::atomic<bool> keeper_failed_{false};
  // Set (under keeper_mutex_) when a handler starts while DONEs are queued;
  // cleared when the loop goes idle. handler_seq_ counts handlers started.
  std::atomic<bool> watch_flush_{false};
  std::atomic<std::uint64_t> handler_seq_{0};
  std::jthread keeper_;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  RingDeque<Job> pending_;
  RingDeque<Completion> completed_;
  RingDeque<Completion> sending_;  // I/O thread only: completions being sent
  std::uint32_t running_ = 0;
  // Pool mode: the jobs handler threads run, each with its thread's cancel
  // source (at most `threads` entries: a scan finds one).
  struct RunningJob {
    std::uint64_t job_id;
    std::stop_source* stop;
  };
  std::vector<RunningJob> running_jobs_;
  bool shutting_down_ = false;
  bool stopping_ = false;  // I/O thread: the stop has fired (JobHandedBack sends no answer then)
  const StopSignal* stop_ = nullptr;  // run()'s, while it runs

  // Progress (Job::report_progress): each running job's newest value, under
  // progress_mutex_; whether one waits to be sent (so the loops ask without
  // the lock), and whether any was ever reported (so a worker that never
  // does takes no lock per answer).
  struct ProgressState {
    std::string value;  // msgpack
    bool pending = false;
    Clock::time_point sent_at{};
  };
  std::mutex progress_mutex_;
  std::map<RunKey, ProgressState> progress_;
  std::atomic<bool> progress_pending_{false};
  std::atomic<bool> progress_used_{false};
  // The job each handler thread runs now (0: none); slot 0 is the inline
  // handler's. Set before the handler starts, cleared before its answer is
  // queued: progress() takes values only for these.
  std::unique_ptr<std::atomic<std::uint64_t>[]> running_slots_;  // `threads` of them
  std::unique_ptr<std::atomic<std::uint32_t>[]> running_attempts_;  // the attempt of each slot's job
  // Whether this connection's broker takes PROGRESS (its WELCOME says);
  // socket held.
  enum class Support { Unknown, Yes, No };
  Support broker_takes_progress_ = Support::Unknown;
  bool said_progress_unsupported_ = false;
  bool said_progress_too_large_ = false;
  std::vector<std::jthread> threads_;

  std::atomic<std::uint64_t> done_{0}, failed_{0}, cancelled_{0}, registrations_{0}, handed_back_{0};
};

Worker::Worker(WorkerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}
Worker::~Worker() = default;
Worker::Worker(Worker&&) noexcept = default;
Worker& Worker::operator=(Worker&&) noexcept = default;
void Worker::run(const StopSignal& stop) { impl_->run(stop); }
Worker::Counters Worker::counters() const { return impl_->counters(); }

int run_worker(int argc, char** argv, WorkerDefaults defaults, Handler handler) {
  const std::string program = argc > 0 ? argv[0] : "worker";
  try {
    auto stop = StopSignal::on_signals();
    cxxopts::Options options(program, "An mw worker: serves jobs of --type, passes results on to --next.");
    options.add_options()
        ("broker", kBrokerFlagHelp,
         cxxopts::value<std::string>()->default_value(default_broker_address()))
        ("type", "job type(s) to serve, comma-separated (or --type given more than once)",
         cxxopts::value<std::string>()->default_value(std::string(defaults.type)))
        ("next", "type of the job the result becomes; empty ends the flow",
         cxxopts::value<std::string>()->default_value(std::string(defaults.next)))
        ("concurrency", "jobs held at once (the broker's credit for this worker)",
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(defaults.concurrency)))
        ("threads", "handler threads: jobs run at once", cxxopts::value<std::uint32_t>()->default_value("1"))
        ("spin-us", kSpinFlagHelp,
         cxxopts::value<std::uint32_t>()->default_value(std::to_string(kDefaultSpinUs)))
        ("log-level", "debug, info, warn, error or off", cxxopts::value<std::string>()->default_value("info"))
        ("h,help", "print this help");
    auto args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << std::endl;
      return 0;
    }
    if (!args.unmatched().empty()) throw UsageError("unexpected argument '" + args.unmatched().front() + "'");
    set_log_level(parse_log_level(args["log-level"].as<std::string>()));
    WorkerOptions wo;
    wo.broker = args["broker"].as<std::string>();
    // Each --type given (the default when none was) is a list of its own.
    std::vector<std::string> type_lists;
    for (const auto& given : args.arguments())
      if (given.key() == "type") type_lists.push_back(given.value());
    if (type_lists.empty() && !defaults.type.empty()) type_lists.emplace_back(defaults.type);
    if (!type_lists.empty()) wo.types = split_types(type_lists, "--type");
    wo.next = args["next"].as<std::string>();
    wo.concurrency = args["concurrency"].as<std::uint32_t>();
    wo.spin_us = args["spin-us"].as<std::uint32_t>();
    wo.threads = args["threads"].as<std::uint32_t>();
    Worker worker(wo, std::move(handler));
    log(LogLevel::info, "worker", "serving " + joined_types(wo.types) + (wo.next.empty() ? "" : " -> " + wo.next) +
                                      "; connecting to the broker at " + wo.broker);
    worker.run(stop);
    return 0;
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", program.c_str(), option_error_text(e.what(), argc, argv).c_str());
    return kUsageExitCode;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return exit_code_for(e);
  }
  return 1;
}

}  // namespace mw
