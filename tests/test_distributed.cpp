// Data-parallel training on c10d: the sharded sampler, the collectives (ranks as threads of this
// process on loopback), synchronised BatchNorm against torch's BatchNorm on the whole batch,
// and whole runs of `distill` as 2 processes against 1 process with the same global batch.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "distillery/core/error.h"
#include "distillery/data/loader.h"
#include "distillery/distributed/gradient_averager.h"
#include "distillery/distributed/launch_environment.h"
#include "distillery/distributed/local_launcher.h"
#include "distillery/distributed/process_group.h"
#include "distillery/distributed/sync_batch_norm.h"
#include "distillery/models/batch_norm.h"
#include "distillery/models/zoo.h"
#include "distillery/train/checkpoint.h"
#include "distillery/train/recipe.h"

using namespace distillery;
namespace fs = std::filesystem;

namespace {

// Runs body(group) on `world` threads, each one rank of a loopback process group. The groups are
// destroyed only after every rank's body has returned.
void run_ranks(int world, const std::function<void(ProcessGroup&)>& body) {
  const int port = find_free_port();
  std::vector<std::exception_ptr> errors(static_cast<size_t>(world));
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      try {
        LaunchEnvironment env;
        env.rank = r;
        env.world_size = world;
        env.master_addr = "127.0.0.1";
        env.master_port = port;
        ProcessGroup::Options options;
        options.timeout_s = 60;
        ProcessGroup group(env, options);
        try {
          body(group);
        } catch (...) {
          errors[r] = std::current_exception();
        }
        ++finished;
        while (finished.load() < world) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } catch (...) {
        errors[r] = std::current_exception();
        ++finished;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

double max_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

TensorDataset tiny_classification_dataset(int64_t n) {
  TensorDataset data;
  data.task = Task::Classification;
  data.num_classes = 10;
  data.images = torch::arange(n * 4).remainder(256).to(torch::kUInt8).reshape({n, 1, 2, 2});
  data.targets = torch::arange(n).remainder(10);
  return data;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The sharded sampler

TEST(ShardedSampler, EveryIndexExactlyOncePerEpochAndShardsFormTheGlobalBatch) {
  const int64_t n = 48, batch = 12, steps_per_epoch = n / batch;
  TensorDataset data = tiny_classification_dataset(n);
  for (int64_t world : {1, 2, 3, 4}) {
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      std::vector<int> seen(n, 0);
      for (int64_t k = 0; k < steps_per_epoch; ++k) {
        const int64_t step = epoch * steps_per_epoch + k;
        LoaderOptions single;
        single.batch_size = batch;
        single.seed = 5;
        Batch whole = make_train_batch(data, single, step);
        std::vector<torch::Tensor> parts;
        for (int64_t r = 0; r < world; ++r) {
          LoaderOptions shard = single;
          shard.shard = r;
          shard.num_shards = world;
          Batch part = make_train_batch(data, shard, step);
          ASSERT_EQ(part.index.size(0), batch / world);
          for (int64_t i = 0; i < part.index.size(0); ++i) ++seen[part.index[i].item<int64_t>()];
          parts.push_back(part.index);
        }
        // Rank order reassembles exactly the batch one process takes at this step.
        EXPECT_TRUE(torch::equal(torch::cat(parts), whole.index)) << "world " << world << " step " << step;
      }
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(seen[i], 1) << "index " << i << ", world " << world << ", epoch " << epoch;
    }
  }
}

TEST(ShardedSampler, PrefetchingStreamMatchesAndBadShardingIsRefused) {
  TensorDataset data = tiny_classification_dataset(40);  // 40 / 8: 5 steps per epoch
  auto shared = std::make_shared<TensorDataset>(data);
  LoaderOptions options;
  options.batch_size = 8;
  options.seed = 9;
  options.prefetch = 3;
  options.shard = 1;
  options.num_shards = 2;
  TrainStream stream(shared, options, /*start_step=*/3);
  for (int64_t step = 3; step < 12; ++step) {
    Batch streamed = stream.next();
    EXPECT_TRUE(torch::equal(streamed.index, make_train_batch(data, options, step).index)) << step;
  }
  options.num_shards = 3;  // 8 is not divisible by 3
  EXPECT_THROW(make_train_batch(data, options, 0), ConfigError);
  options.num_shards = 2;
  options.shard = 2;
  EXPECT_THROW(make_train_batch(data, options, 0), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// The environment

TEST(LaunchEnvironment, ReadsTorchrunVariablesAndNamesTheBadOne) {
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(name);
  EXPECT_FALSE(LaunchEnvironment::from_environment().has_value());
  setenv("WORLD_SIZE", "1", 1);
  EXPECT_FALSE(LaunchEnvironment::from_environment().has_value());  // one process: a plain run

  setenv("WORLD_SIZE", "4", 1);
  try {
    LaunchEnvironment::from_environment();
    FAIL() << "RANK is missing";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RANK"), std::string::npos) << e.what();
  }
  setenv("RANK", "2", 1);
  setenv("LOCAL_RANK", "0", 1);
  setenv("MASTER_ADDR", "node7", 1);
  setenv("MASTER_PORT", "29511", 1);
  auto env = LaunchEnvironment::from_environment();
  ASSERT_TRUE(env.has_value());
  EXPECT_EQ(env->rank, 2);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->master_addr, "node7");
  EXPECT_EQ(env->master_port, 29511);

  setenv("RANK", "4", 1);  // ranks are 0..3
  EXPECT_THROW(LaunchEnvironment::from_environment(), ConfigError);
  setenv("RANK", "1", 1);
  setenv("MASTER_PORT", "80x", 1);
  try {
    LaunchEnvironment::from_environment();
    FAIL() << "MASTER_PORT is malformed";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_PORT='80x'"), std::string::npos) << e.what();
  }
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) unsetenv(name);

  setenv("DISTILL_TIMEOUT_S", "12.5", 1);
  EXPECT_DOUBLE_EQ(timeout_from_environment(300), 12.5);
  setenv("DISTILL_TIMEOUT_S", "-1", 1);
  EXPECT_THROW(timeout_from_environment(300), ConfigError);
  unsetenv("DISTILL_TIMEOUT_S");
  EXPECT_DOUBLE_EQ(timeout_from_environment(300), 300);
}

// ---------------------------------------------------------------------------------------------
// Collectives (two ranks as threads)

TEST(ProcessGroup, SumsBroadcastsAndGathersUnevenRows) {
  std::vector<torch::Tensor> sums(2), broadcasts(2), gathered(2), empty_gather(2);
  run_ranks(2, [&](ProcessGroup& group) {
    const int r = group.rank();
    torch::Tensor values = torch::tensor({1.0 + r, 10.0 * r});
    group.all_reduce_sum(values);
    sums[r] = values;
    torch::Tensor mine = torch::full({3}, 7.0 + r);
    group.broadcast(mine, 1);
    broadcasts[r] = mine;
    // Rank 0 contributes 2 rows, rank 1 three.
    torch::Tensor rows = torch::arange(r == 0 ? 2 : 3).to(torch::kFloat).unsqueeze(1).repeat({1, 2}) + 100 * r;
    gathered[r] = group.all_gather_rows(rows);
    empty_gather[r] = group.all_gather_rows(torch::empty({0, 4}, torch::kLong));
  });
  auto expected_rows = torch::tensor({0.f, 0.f, 1.f, 1.f, 100.f, 100.f, 101.f, 101.f, 102.f, 102.f}).reshape({5, 2});
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(torch::equal(sums[r], torch::tensor({3.0, 10.0}))) << sums[r];
    EXPECT_TRUE(torch::equal(broadcasts[r], torch::full({3}, 8.0))) << broadcasts[r];
    EXPECT_TRUE(torch::equal(gathered[r], expected_rows)) << gathered[r];
    EXPECT_EQ(empty_gather[r].sizes(), (std::vector<int64_t>{0, 4}));
  }
}

TEST(GradientAverager, AveragesInBucketsAndKeepsAbsentGradientsAbsent) {
  std::vector<std::vector<torch::Tensor>> grads(2);
  std::vector<bool> d_defined(2, true);
  std::vector<size_t> buckets(2);
  run_ranks(2, [&](ProcessGroup& group) {
    const int r = group.rank();
    auto a = torch::zeros({3, 4}, torch::requires_grad());
    auto b = torch::zeros({5}, torch::requires_grad());
    auto c = torch::zeros({2, 2}, torch::requires_grad());
    auto d = torch::zeros({7}, torch::requires_grad());
    a.mutable_grad() = torch::full({3, 4}, 1.0 + r);
    b.mutable_grad() = torch::arange(5).to(torch::kFloat) * (r == 0 ? 1 : 3);
    if (r == 0) c.mutable_grad() = torch::full({2, 2}, 4.0);  // rank 1 has none
    // 40-byte buckets: a (48 B) alone, then b + c (36 B), then d.
    GradientAverager averager({a, b, c, d}, /*bucket_bytes=*/40);
    buckets[r] = averager.num_buckets();
    averager.average(group);
    grads[r] = {a.grad(), b.grad(), c.grad()};
    d_defined[r] = d.grad().defined();
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(buckets[r], 3u);
    EXPECT_TRUE(torch::allclose(grads[r][0], torch::full({3, 4}, 1.5)));
    EXPECT_TRUE(torch::allclose(grads[r][1], torch::arange(5).to(torch::kFloat) * 2));
    ASSERT_TRUE(grads[r][2].defined()) << "rank " << r;
    EXPECT_TRUE(torch::allclose(grads[r][2], torch::full({2, 2}, 2.0)));  // (4 + 0) / 2
    EXPECT_FALSE(d_defined[r]);
  }
}

// ---------------------------------------------------------------------------------------------
// Synchronised BatchNorm

TEST(SyncBatchNorm, TwoRanksEqualOneBatchNormOverTheWholeBatch) {
  torch::manual_seed(0);
  const int64_t channels = 3;
  // A large mean relative to the spread: a one-pass E[x^2] - E[x]^2 would lose digits here.
  auto input = torch::randn({6, channels, 4, 5}) * 0.5 + 40;
  auto loss_weights = torch::randn({6, channels, 4, 5});
  BatchNorm2d reference(channels);
  {
    torch::NoGradGuard no_grad;
    reference->weight.uniform_(0.5, 1.5);
    reference->bias.uniform_(-0.5, 0.5);
  }
  auto gamma = reference->weight.detach().clone(), beta = reference->bias.detach().clone();
  auto x = input.clone().requires_grad_(true);
  auto y = reference->forward(x);  // no scope: torch's own batch norm over 6 samples
  (y * loss_weights).sum().backward();

  struct RankResult {
    torch::Tensor output, input_grad, weight_grad, bias_grad, running_mean, running_var, batches;
  };
  std::vector<RankResult> results(2);
  run_ranks(2, [&](ProcessGroup& group) {
    const int r = group.rank();
    BatchNorm2d bn(channels);
    {
      torch::NoGradGuard no_grad;
      bn->weight.copy_(gamma);
      bn->bias.copy_(beta);
    }
    BatchNormSyncScope scope(&group);
    auto xr = input.slice(0, 3 * r, 3 * r + 3).clone().requires_grad_(true);
    auto yr = bn->forward(xr);
    (yr * loss_weights.slice(0, 3 * r, 3 * r + 3)).sum().backward();
    results[r] = {yr.detach(), xr.grad(), bn->weight.grad(), bn->bias.grad(),
                  bn->running_mean.clone(), bn->running_var.clone(), bn->num_batches_tracked.clone()};
  });

  auto output = torch::cat({results[0].output, results[1].output});
  auto input_grad = torch::cat({results[0].input_grad, results[1].input_grad});
  EXPECT_LT(max_difference(output, y), 2e-5);
  EXPECT_LT(max_difference(input_grad, x.grad()), 2e-4) << "input gradient, max |grad| "
                                                         << x.grad().abs().max().item<double>();
  // The affine gradients are per rank; their sum is the whole batch's.
  EXPECT_LT(max_difference(results[0].weight_grad + results[1].weight_grad, reference->weight.grad()), 1e-4);
  EXPECT_LT(max_difference(results[0].bias_grad + results[1].bias_grad, reference->bias.grad()), 1e-4);
  for (const auto& rr : results) {
    EXPECT_LT(max_difference(rr.running_mean, reference->running_mean), 1e-4);
    EXPECT_LT(max_difference(rr.running_var, reference->running_var), 1e-5);
    EXPECT_EQ(rr.batches.item<int64_t>(), 1);
  }
  // Local statistics of 3 samples are visibly different (the comparison above can fail).
  BatchNorm2d local(channels);
  {
    torch::NoGradGuard no_grad;
    local->weight.copy_(gamma);
    local->bias.copy_(beta);
  }
  EXPECT_GT(max_difference(local->forward(input.slice(0, 0, 3)), y.slice(0, 0, 3)), 1e-2);
}

// ---------------------------------------------------------------------------------------------
// The local launcher

namespace {

// A process that exists and is not a zombie (an orphan killed in a container may stay unreaped).
bool process_alive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return false;
  auto close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

}  // namespace

TEST(LocalLauncher, OneFailingRankStopsTheOthersAndItsCodeIsReturned) {
  const std::string dir = (fs::temp_directory_path() / ("distillery_launch_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  LocalLaunchOptions options;
  options.processes = 3;
  options.grace_seconds = 2;
  auto begin = std::chrono::steady_clock::now();
  // Rank 1 fails; ranks 0 and 2 start a minute-long child of their own and wait for it.
  int code = launch_local_processes(
      "/bin/sh",
      {"-c", "test \"$WORLD_SIZE\" = 3 || exit 9; if [ \"$RANK\" = 1 ]; then sleep 1; exit 3; fi; "
             "sleep 60 & echo $! > " + dir + "/child_$RANK; wait"},
      options);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_EQ(code, 3);
  EXPECT_LT(seconds, 15.0);
  // The ranks' own children went with them (each rank is a process group).
  for (int rank : {0, 2}) {
    std::ifstream in(dir + "/child_" + std::to_string(rank));
    int child = 0;
    ASSERT_TRUE(in >> child) << "rank " << rank << " did not start its child";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (process_alive(child) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_FALSE(process_alive(child)) << "rank " << rank << "'s child " << child;
  }
  fs::remove_all(dir);

  options.processes = 2;
  EXPECT_EQ(launch_local_processes("/bin/sh", {"-c", "test -n \"$MASTER_PORT\" && test \"$MASTER_ADDR\" = 127.0.0.1"},
                                   options),
            0);
}

// ---------------------------------------------------------------------------------------------
// Whole runs of the distill binary

namespace {

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("distillery_dp_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// Fashion-MNIST classification with a narrow ResNet-18 (BatchNorm everywhere). The cross-entropy
// is a mean over images, so the mean of the ranks' losses is the loss of the whole batch.
std::string write_recipe(const std::string& dir) {
  std::string path = dir + "/dp.yaml";
  std::ofstream(path) << R"(name: dp
seed: 4
data: {benchmark: fashion-mnist}
model: {name: resnet18_cls, width: 0.125}
train:
  steps: 40
  batch_size: 16
  eval_every: 1000
  log_every: 1
  prefetch: 2
  optimizer: {type: sgd, lr: 0.01, momentum: 0.9, warmup_steps: 0}
)";
  return path;
}

struct RunResult {
  int code = -1;
  std::string errors;
};

RunResult run_shell(const std::string& command, const std::string& error_file) {
  int status = std::system((command + " > /dev/null 2> " + error_file).c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::ifstream in(error_file);
  std::stringstream text;
  text << in.rdbuf();
  r.errors = text.str();
  return r;
}

std::string distill() { return std::string("OMP_WAIT_POLICY=PASSIVE ") + DISTILL_BINARY; }

std::vector<torch::Tensor> checkpoint_state(const std::string& file) {
  ModelOptions options;
  options.num_classes = 10;
  options.in_channels = 1;
  options.input_size = 28;
  options.width = 0.125;
  Model model = create_model("resnet18_cls", options);
  load_checkpoint(file, CheckpointParts{model.get()});
  std::vector<torch::Tensor> state;
  for (auto& p : model->parameters()) state.push_back(p.detach().clone());
  for (auto& b : model->buffers())
    if (b.is_floating_point()) state.push_back(b.detach().clone());
  return state;
}

// The largest difference of any tensor, relative to that tensor's magnitude when above 1
// (running variances reach ~100 in this network).
double max_state_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    double scale = std::max(1.0, a[i].abs().max().item<double>());
    worst = std::max(worst, max_difference(a[i], b[i]) / scale);
  }
  return worst;
}

std::vector<double> logged_losses(const std::string& metrics_file) {
  std::vector<double> losses;
  std::ifstream in(metrics_file);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
  }
  return losses;
}

}  // namespace

TEST(DataParallelRun, TwoProcessesMatchOneProcessWithTheSameGlobalBatch) {
  const std::string dir = temp_dir("match");
  const std::string recipe = write_recipe(dir);
  // Few steps: later, a max-pool or ReLU tie flipped by float rounding can amplify the rounding
  // gap between the two computations (measured: 2e-7 after 3 steps, 1e-5 after 4, 3e-4 after 6).
  const int steps = 3;
  auto train = [&](const std::string& name, int processes, const std::string& extra) {
    std::string launch = processes > 1 ? fmt::format("launch --nproc {} -- ", processes) : "";
    return run_shell(fmt::format("{} {}--threads 1 train {} --set output.dir={}/{} --stop-after {} {}", distill(),
                                 launch, recipe, dir, name, steps, extra),
                     dir + "/" + name + ".err");
  };
  RunResult single = train("single", 1, "");
  ASSERT_EQ(single.code, 0) << single.errors;
  RunResult synced = train("synced", 2, "--set train.distributed.sync_batch_norm=true");
  ASSERT_EQ(synced.code, 0) << synced.errors;
  RunResult local = train("local", 2, "");
  ASSERT_EQ(local.code, 0) << local.errors;

  auto reference = checkpoint_state(dir + "/single/latest.ckpt");
  const double synced_gap = max_state_difference(reference, checkpoint_state(dir + "/synced/latest.ckpt"));
  const double local_gap = max_state_difference(reference, checkpoint_state(dir + "/local/latest.ckpt"));
  // Float tolerance with synchronised BatchNorm; local statistics over half the batch differ.
  EXPECT_LT(synced_gap, 1e-4) << "local-BN gap " << local_gap;
  std::printf("max relative state difference after %d steps: synchronised BN %.3g, local BN %.3g\n", steps,
              synced_gap, local_gap);
  EXPECT_GT(local_gap, 20 * synced_gap) << "synced gap " << synced_gap;

  // Only rank 0 logged: one line per step, each the mean of the ranks' losses = the batch's loss.
  auto single_losses = logged_losses(dir + "/single/metrics.jsonl");
  auto synced_losses = logged_losses(dir + "/synced/metrics.jsonl");
  ASSERT_EQ(single_losses.size(), static_cast<size_t>(steps));
  ASSERT_EQ(synced_losses.size(), static_cast<size_t>(steps));
  for (int i = 0; i < steps; ++i) EXPECT_NEAR(synced_losses[i], single_losses[i], 1e-4) << "step " << i + 1;

  // Resume with a different number of processes: 2 processes for 2 steps, then 1 for the rest.
  RunResult first = run_shell(fmt::format("{} launch --nproc 2 -- --threads 1 train {} --set output.dir={}/mixed "
                                          "--set train.distributed.sync_batch_norm=true --stop-after 2",
                                          distill(), recipe, dir),
                              dir + "/mixed1.err");
  ASSERT_EQ(first.code, 0) << first.errors;
  RunResult second = run_shell(fmt::format("{} --threads 1 train {} --set output.dir={}/mixed "
                                           "--set train.distributed.sync_batch_norm=true --resume --stop-after {}",
                                           distill(), recipe, dir, steps),
                               dir + "/mixed2.err");
  ASSERT_EQ(second.code, 0) << second.errors;
  EXPECT_LT(max_state_difference(reference, checkpoint_state(dir + "/mixed/latest.ckpt")), 1e-4);
  fs::remove_all(dir);
}

TEST(DataParallelRun, WhenARankDiesTheOtherStopsWithOneLineWithinTheTimeout) {
  const std::string dir = temp_dir("dies");
  const std::string recipe = write_recipe(dir);
  const int port = find_free_port();
  auto start_rank = [&](int rank) {
    pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
      std::string errors = dir + "/rank" + std::to_string(rank) + ".err";
      freopen("/dev/null", "w", stdout);
      freopen(errors.c_str(), "w", stderr);
      execl(DISTILL_BINARY, DISTILL_BINARY, "--threads", "1", "train", recipe.c_str(), "--set",
            ("output.dir=" + dir + "/run").c_str(), "--set", "train.steps=100000", "--set",
            "train.distributed.timeout_s=20", static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  pid_t rank0 = start_rank(0), rank1 = start_rank(1);
  // Wait until training runs (rank 0 logs steps), then kill rank 1 without warning.
  const std::string metrics = dir + "/run/metrics.jsonl";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (logged_losses(metrics).size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(logged_losses(metrics).size(), 3u) << "training never started";
  kill(rank1, SIGKILL);
  auto killed_at = std::chrono::steady_clock::now();
  int status = 0;
  pid_t done = 0;
  while ((done = waitpid(rank0, &status, WNOHANG)) == 0 &&
         std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  if (done == 0) kill(rank0, SIGKILL), waitpid(rank0, &status, 0);
  waitpid(rank1, nullptr, 0);
  ASSERT_EQ(done, rank0) << "rank 0 still running " << seconds << " s after rank 1 died";
  EXPECT_LT(seconds, 20.0 + 10.0);  // the timeout, plus slack for a loaded machine
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::ifstream in(dir + "/rank0.err");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("distill: error: distributed: rank 0 of 2:"), std::string::npos) << text;
  // One line of error (progress output goes to stdout).
  std::string error_line = text.substr(text.find("distill: error:"));
  EXPECT_EQ(std::count(error_line.begin(), error_line.end(), '\n'), 1) << text;
  fs::remove_all(dir);
}
