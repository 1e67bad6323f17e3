// A test-only stand-in for a server that writes through a batch writer:
// writes rows with ids FIRST..FIRST+COUNT-1 into probe_rows (id, payload)
// from THREADS threads and prints "ack <id> inserted|duplicate" only from
// done() after the row's batch committed, each line flushed at once: a line
// on stdout is the success reply. The SIGKILL test kills it mid-stream and
// checks every acknowledged id against the database.
//
// usage: batch_writer_probe CONNINFO FIRST COUNT THREADS
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "persistence/batch_writer.hpp"

namespace {

using karvon::persistence::batch_writer;
using karvon::persistence::batch_writer_options;
using karvon::persistence::to_string;
using karvon::persistence::write_result;

std::mutex out_mu;

void say(const std::string& line) {
  std::lock_guard lock{out_mu};
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: batch_writer_probe CONNINFO FIRST COUNT THREADS\n");
    return 2;
  }
  const long long first = std::atoll(argv[2]);
  const long long count = std::atoll(argv[3]);
  const int threads = std::max(1, std::atoi(argv[4]));

  batch_writer_options o;
  o.conninfo = argv[1];
  o.table = "probe_rows";
  o.columns = {"id", "payload"};
  o.key_columns = {"id"};
  o.max_waiting = static_cast<std::size_t>(count) + 1;
  std::atomic<long long> answered{0};
  std::mutex mu;
  std::condition_variable all_answered;
  {
    batch_writer writer{o, nullptr};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        for (long long id = first + t; id < first + count; id += threads) {
          writer.write(
              {std::to_string(id), "payload of " + std::to_string(id)},
              [&, id](write_result r) {
                if (r.ok())
                  say("ack " + std::to_string(id)
                      + (r.duplicate ? " duplicate\n" : " inserted\n"));
                else
                  say("error " + std::to_string(id) + " "
                      + to_string(r.error->what) + " " + r.error->message
                      + "\n");
                if (++answered == count) {
                  std::lock_guard lock{mu};
                  all_answered.notify_all();
                }
              });
        }
      });
    for (auto& t : pool)
      t.join();
    std::unique_lock lock{mu};
    all_answered.wait(lock, [&] { return answered.load() == count; });
  }
  say("done\n");
  return 0;
}
