// A progress bar for long loops: a redrawn line on a terminal, periodic plain lines otherwise
// (logs, CI), so progress is visible either way.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace distillery {

class ProgressBar {
 public:
  // total: number of units (steps, batches); label: printed before the bar.
  ProgressBar(std::string label, int64_t total, int64_t start = 0);
  ~ProgressBar();

  // Sets the position and the trailing status text (loss, metric...); redraws when due.
  void update(int64_t position, const std::string& status = "");
  // Prints the final state and a newline; called by the destructor if needed.
  void finish(const std::string& status = "");

  static bool stdout_is_terminal();

 private:
  void draw(bool final_line);

  std::string label_;
  int64_t total_;
  int64_t start_;
  int64_t position_;
  std::string status_;
  bool terminal_;
  bool finished_ = false;
  std::chrono::steady_clock::time_point begin_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace distillery
