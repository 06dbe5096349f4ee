// Trains the same model, data order and seeds under several precision policies and compares
// them: one child process of the training example per policy x seed (build/examples/mnist or
// build/examples/cifar10, found next to this binary), then a summary table and one
// self-contained report.html (examples/common/report.h) in the output directory.
//
//   build/examples/compare_precision --dataset mnist --model cnn --epochs 2 --data data/mnist --threads 2
//   build/examples/compare_precision --policies bf16-master,bf16-pure,fp32 --epochs 3 --seeds 3
//   build/examples/compare_precision --report-only compare-mnist-cnn      # rebuild table + report
//
// Policies: amp/policy.h's names, and for mnist "qat-int8" (fp32 with quantization-aware training,
// examples/mnist --qat; its final accuracy is the converted int8 model's).
// Each run writes <out>/<policy>-seed<k>.jsonl (the example's --metrics, with --inspect so the
// report can show per-layer F16 underflow) and <out>/<policy>-seed<k>.log (its stdout);
// <out>/manifest.json lists the runs, so --report-only needs nothing else. Peak memory is the
// child's ru_maxrss. stderr: which run and epoch is going; stdout: the table, its definitions
// and, as the last line, one JSON object holding the table.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "amp/policy.h"
#include "examples/common/flags.h"
#include "examples/common/progress.h"
#include "examples/common/report.h"
#include "examples/common/training.h"

namespace fs = std::filesystem;
namespace ex = mantissa::examples;
namespace rp = mantissa::examples::report;

namespace {

const char* const kDefaultPolicies = "fp32,bf16,fp16,fp16-noscale,bf16-master,fp16-master,bf16-pure";

struct Config {
  std::string dataset = "mnist";
  std::string model;  // default per dataset
  std::string data;   // default per dataset
  int64_t epochs = 2;
  std::string policies = kDefaultPolicies;
  int64_t seeds = 1;
  std::string seed_list;
  std::string device = "cpu";
  int64_t threads = 0;
  int64_t log_interval = 50;
  int64_t train_limit = 0;
  int64_t batch_size = 0;
  int64_t test_limit = 0;
  bool synthetic = false;
  std::string out;
  std::string report_only;
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open for reading (" + std::strerror(errno) + ")");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(path.string() + ": cannot open for writing (" + std::strerror(errno) + ")");
  out << text;
  if (!out.flush()) throw std::runtime_error(path.string() + ": write failed");
}

// The directory of this executable: the training examples are built next to it.
fs::path own_directory(const char* argv0) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) return self.parent_path();
  return fs::absolute(fs::path(argv0)).parent_path();
}

struct ChildResult {
  int exit_code = 0;  // 128 + signal when killed
  double peak_rss_mb = rp::kNaN;
  double wall_s = 0;
  std::deque<std::string> last_lines;  // the end of its stderr, for error messages
};

// Runs exe with args; its stdout goes to `stdout_path`, its stderr lines are relayed to ours
// with `prefix` (the progress line). Peak memory from wait4's rusage (kilobytes on Linux).
ChildResult run_child(const std::string& exe, const std::vector<std::string>& args, const fs::path& stdout_path,
                      const std::string& prefix) {
  const int out_fd = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out_fd < 0) throw std::runtime_error(stdout_path.string() + ": cannot open (" + std::strerror(errno) + ")");
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_fd);
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  std::fflush(stdout);
  std::fflush(stderr);
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out_fd);
    ::close(err_pipe[0]);
    ::close(err_pipe[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::execv(exe.c_str(), argv.data());
    const char msg[] = "compare_precision: exec of the training example failed\n";
    [[maybe_unused]] const ssize_t w = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_pipe[1]);

  ChildResult result;
  std::string pending;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(err_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      std::fprintf(stderr, "%s %s\n", prefix.c_str(), line.c_str());
      result.last_lines.push_back(line);
      if (result.last_lines.size() > 8) result.last_lines.pop_front();
    }
  }
  if (!pending.empty()) {
    std::fprintf(stderr, "%s %s\n", prefix.c_str(), pending.c_str());
    result.last_lines.push_back(pending);
  }
  ::close(err_pipe[0]);

  int status = 0;
  struct rusage usage {};
  pid_t waited;
  do {
    waited = ::wait4(pid, &status, 0, &usage);
  } while (waited < 0 && errno == EINTR);
  if (waited < 0) throw std::runtime_error(std::string("wait4: ") + std::strerror(errno));
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
  return result;
}

std::string seeds_text(const std::vector<int64_t>& seeds) {
  std::string s;
  for (int64_t v : seeds) s += (s.empty() ? "" : ",") + std::to_string(v);
  return s;
}

// Reads every run's metrics file named by the manifest; runs whose file is missing are
// reported and left out.
std::vector<rp::RunMetrics> load_runs(const fs::path& dir, const rp::Manifest& manifest) {
  std::vector<rp::RunMetrics> runs;
  for (const rp::ManifestRun& r : manifest.runs) {
    const fs::path file = dir / r.metrics;
    if (!fs::exists(file)) {
      std::fprintf(stderr, "compare_precision: %s (%s seed %lld) is missing; left out of the report\n",
                   file.c_str(), r.policy.c_str(), static_cast<long long>(r.seed));
      continue;
    }
    rp::RunMetrics m = rp::parse_metrics(read_file(file), file.string(), r.policy, r.seed);
    m.peak_rss_mb = r.peak_rss_mb;
    m.wall_s = r.wall_s;
    runs.push_back(std::move(m));
  }
  return runs;
}

std::string setting(const rp::Manifest& m, const std::string& key) {
  for (const auto& [k, v] : m.settings)
    if (k == key) return v;
  return "";
}

// Table on stdout, report.html in dir, and the JSON line last.
void write_outputs(const fs::path& dir, const rp::Manifest& manifest) {
  const std::vector<rp::RunMetrics> runs = load_runs(dir, manifest);
  const std::string reference = "fp32";
  const std::vector<rp::PolicySummary> rows = rp::summarize(runs, reference);

  rp::ReportInput input;
  input.title = "Precision comparison: " + setting(manifest, "dataset") + " " + setting(manifest, "model") + ", " +
                setting(manifest, "epochs") + " epoch(s), seeds " + setting(manifest, "seeds");
  input.settings = manifest.settings;
  input.runs = runs;
  input.reference = reference;
  const fs::path report = dir / "report.html";
  write_file(report, rp::render_html(input));

  std::printf("\n%s\n", input.title.c_str());
  std::printf("%s", rp::format_table(rows).c_str());
  std::printf("\nacc: test accuracy %% after the last / best epoch; final loss: last epoch's mean training loss;\n"
              "skipped: steps the loss scaler skipped; ms/step: training time per step; peak MB: peak RSS;\n"
              "cells are mean ± std over the seeds.\n%s.\n",
              rp::loss_gap_definition().c_str());
  for (const std::string& f : rp::findings(rows, runs)) std::printf("- %s\n", f.c_str());
  std::printf("report: %s\n", fs::absolute(report).c_str());

  rp::Json line;
  line["dataset"] = setting(manifest, "dataset");
  line["model"] = setting(manifest, "model");
  line["epochs"] = setting(manifest, "epochs");
  line["seeds"] = setting(manifest, "seeds");
  line["reference"] = reference;
  line["loss_gap"] = rp::loss_gap_definition();
  line["report"] = fs::absolute(report).string();
  line["table"] = rp::table_json(rows);
  std::printf("%s\n", line.dump().c_str());
  std::fflush(stdout);
}

int run(int argc, const char* const* argv) {
  Config c;
  ex::Flags flags("compare_precision",
                  "Trains one model under several precision policies (and seeds) and writes a comparison table and "
                  "a self-contained report.html.");
  flags.add("dataset", &c.dataset, "data set (selects the training example)", {"mnist", "cifar10"});
  flags.add("model", &c.model, "network: mlp or cnn (mnist), resnet20 or airbench (cifar10); empty = cnn / resnet20");
  flags.add("data", &c.data, "data directory passed to the example; empty = data/mnist or data/cifar10");
  flags.add("epochs", &c.epochs, "epochs per run");
  flags.add("policies", &c.policies, "comma-separated precision policies (amp/policy.h); fp32 is the loss-gap reference");
  flags.add("seeds", &c.seeds, "run seeds 1..N for every policy");
  flags.add("seed-list", &c.seed_list, "comma-separated seeds instead of --seeds");
  flags.add("device", &c.device, "cpu, cuda or cuda:N (passed to the example)");
  flags.add("threads", &c.threads, "CPU threads per run; 0 = all cores");
  flags.add("log-interval", &c.log_interval, "steps between loss records and inspector samples");
  flags.add("train-limit", &c.train_limit, "train on the first N images only; 0 = all");
  flags.add("batch-size", &c.batch_size, "training batch size; 0 = the example's default");
  flags.add("test-limit", &c.test_limit, "cifar10 only: evaluate on the first N test images; 0 = all");
  flags.add("synthetic", &c.synthetic, "cifar10 only: the example's generated data set of CIFAR shape instead of --data");
  flags.add("out", &c.out, "output directory; empty = compare-<dataset>-<model>");
  flags.add("report-only", &c.report_only, "rebuild the table and report.html from DIR/manifest.json without training");
  if (!flags.parse(argc, argv)) return 0;

  if (!c.report_only.empty()) {
    const fs::path dir = c.report_only;
    const fs::path manifest_path = dir / "manifest.json";
    if (!fs::exists(manifest_path))
      throw ex::FlagError("--report-only " + c.report_only + ": no manifest.json there (written by a training run)");
    rp::Json j;
    try {
      j = rp::Json::parse(read_file(manifest_path));
    } catch (const rp::Json::parse_error& e) {
      throw rp::ReportError(manifest_path.string() + ": not JSON (" + e.what() + ")");
    }
    write_outputs(dir, rp::manifest_from_json(j));
    return 0;
  }

  // Flags -> the runs ----------------------------------------------------------------------------
  if (c.model.empty()) c.model = c.dataset == "mnist" ? "cnn" : "resnet20";
  const std::vector<std::string> models =
      c.dataset == "mnist" ? std::vector<std::string>{"mlp", "cnn"} : std::vector<std::string>{"resnet20", "airbench"};
  if (std::find(models.begin(), models.end(), c.model) == models.end())
    throw ex::FlagError("--model " + c.model + ": --dataset " + c.dataset + " trains " + models[0] + " or " + models[1]);
  if (c.synthetic && c.dataset != "cifar10")
    throw ex::FlagError("--synthetic: only --dataset cifar10 has a synthetic data set");
  if (c.test_limit != 0 && c.dataset != "cifar10")
    throw ex::FlagError("--test-limit: only the cifar10 example evaluates on part of the test set");
  if (c.test_limit < 0) throw ex::FlagError("--test-limit " + std::to_string(c.test_limit) + ": must be >= 0");
  if (c.data.empty()) c.data = "data/" + c.dataset;
  if (c.epochs < 1) throw ex::FlagError("--epochs " + std::to_string(c.epochs) + ": must be >= 1");
  if (c.log_interval < 1) throw ex::FlagError("--log-interval " + std::to_string(c.log_interval) + ": must be >= 1");
  if (c.threads < 0) throw ex::FlagError("--threads " + std::to_string(c.threads) + ": must be >= 0");
  if (c.train_limit < 0) throw ex::FlagError("--train-limit " + std::to_string(c.train_limit) + ": must be >= 0");
  if (c.batch_size < 0) throw ex::FlagError("--batch-size " + std::to_string(c.batch_size) + ": must be >= 0");

  const std::vector<std::string> policies = split(c.policies, ',');
  if (policies.empty()) throw ex::FlagError("--policies: give at least one policy");
  // The precision policies, plus "qat-int8": fp32 training with quantization-aware training and
  // the converted int8 model's accuracy as the final one (examples/mnist --qat).
  std::vector<std::string> known = mantissa::amp::precision_names();
  if (c.dataset == "mnist") known.push_back("qat-int8");
  for (const std::string& p : policies) {
    if (std::find(known.begin(), known.end(), p) == known.end()) {
      std::string list;
      for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
      throw ex::FlagError("--policies: unknown policy \"" + p + "\" (known: " + list + ")");
    }
    if (std::count(policies.begin(), policies.end(), p) > 1)
      throw ex::FlagError("--policies: \"" + p + "\" is listed twice");
  }

  std::vector<int64_t> seeds;
  if (!c.seed_list.empty()) {
    for (const std::string& s : split(c.seed_list, ',')) {
      try {
        size_t used = 0;
        seeds.push_back(std::stoll(s, &used));
        if (used != s.size()) throw std::invalid_argument(s);
      } catch (const std::exception&) {
        throw ex::FlagError("--seed-list: \"" + s + "\" is not an integer");
      }
    }
    if (seeds.empty()) throw ex::FlagError("--seed-list: give at least one seed");
  } else {
    if (c.seeds < 1) throw ex::FlagError("--seeds " + std::to_string(c.seeds) + ": must be >= 1");
    for (int64_t s = 1; s <= c.seeds; ++s) seeds.push_back(s);
  }

  const fs::path exe = own_directory(argv[0]) / c.dataset;
  if (::access(exe.c_str(), X_OK) != 0)
    throw ex::FlagError("--dataset " + c.dataset + ": the training example " + exe.string() +
                        " is not built (build the example_" + c.dataset + " target; it must sit next to compare_precision)");
  if (!c.synthetic && !fs::is_directory(c.data))
    throw ex::FlagError("--data " + c.data + ": not a directory" +
                        (c.dataset == "mnist" ? " (scripts/fetch-mnist.sh DIR fetches MNIST)" : ""));

  const fs::path out = c.out.empty() ? fs::path("compare-" + c.dataset + "-" + c.model) : fs::path(c.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw ex::FlagError("--out " + out.string() + ": cannot create (" + ec.message() + ")");

  rp::Manifest manifest;
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  manifest.settings = {{"dataset", c.dataset},
                       {"model", c.model},
                       {"data", c.synthetic ? "synthetic" : c.data},
                       {"epochs", std::to_string(c.epochs)},
                       {"seeds", seeds_text(seeds)},
                       {"policies", c.policies},
                       {"device", c.device},
                       {"threads", c.threads == 0 ? "all cores" : std::to_string(c.threads)},
                       {"log interval", std::to_string(c.log_interval)},
                       {"train limit", c.train_limit == 0 ? "all images" : std::to_string(c.train_limit)},
                       {"command", command}};

  // Training ---------------------------------------------------------------------------------------
  const size_t total = policies.size() * seeds.size();
  size_t k = 0;
  std::vector<std::string> failures;
  const auto start = std::chrono::steady_clock::now();
  for (const int64_t seed : seeds) {
    for (const std::string& policy : policies) {
      ++k;
      const std::string stem = policy + "-seed" + std::to_string(seed);
      rp::ManifestRun entry;
      entry.policy = policy;
      entry.seed = seed;
      entry.metrics = stem + ".jsonl";
      std::vector<std::string> args = {"--model", c.model, "--epochs", std::to_string(c.epochs),
                                       "--seed", std::to_string(seed), "--precision",
                                       policy == "qat-int8" ? "fp32" : policy,
                                       "--device", c.device, "--threads", std::to_string(c.threads),
                                       "--metrics", (out / entry.metrics).string(), "--inspect",
                                       "--log-interval", std::to_string(c.log_interval),
                                       "--train-limit", std::to_string(c.train_limit)};
      if (policy == "qat-int8") args.push_back("--qat");
      if (c.synthetic) {
        args.push_back("--synthetic");
      } else {
        args.push_back("--data");
        args.push_back(c.data);
      }
      if (c.test_limit > 0) {
        args.push_back("--test-limit");
        args.push_back(std::to_string(c.test_limit));
      }
      if (c.batch_size > 0) {
        args.push_back("--batch-size");
        args.push_back(std::to_string(c.batch_size));
      }
      const std::string prefix = "[run " + std::to_string(k) + "/" + std::to_string(total) + " " + policy + " seed " +
                                 std::to_string(seed) + "]";
      std::fprintf(stderr, "%s starting (%s elapsed)\n", prefix.c_str(),
                   ex::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()).c_str());
      const ChildResult r = run_child(exe.string(), args, out / (stem + ".log"), prefix);
      entry.peak_rss_mb = r.peak_rss_mb;
      entry.wall_s = r.wall_s;
      entry.exit_code = r.exit_code;
      manifest.runs.push_back(entry);
      // Written after every run: an interrupted comparison can still be reported.
      write_file(out / "manifest.json", rp::manifest_to_json(manifest).dump(2) + "\n");
      if (r.exit_code != 0) {
        std::string why = prefix + " failed with exit code " + std::to_string(r.exit_code);
        if (!r.last_lines.empty()) why += ": " + r.last_lines.back();
        std::fprintf(stderr, "%s\n", why.c_str());
        failures.push_back(why);
      } else {
        std::fprintf(stderr, "%s done in %s, peak %.0f MB\n", prefix.c_str(), ex::format_duration(r.wall_s).c_str(),
                     r.peak_rss_mb);
      }
    }
  }
  std::fprintf(stderr, "all %zu runs finished in %s\n", total,
               ex::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()).c_str());
  write_outputs(out, manifest);
  if (!failures.empty()) {
    std::fprintf(stderr, "compare_precision: %zu of %zu runs failed:\n", failures.size(), total);
    for (const std::string& f : failures) std::fprintf(stderr, "  %s\n", f.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return ex::run_main("compare_precision", run, argc, argv); }
