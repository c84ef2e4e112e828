// Error types. The CLI turns each into one line on stderr and a non-zero exit code.
#pragma once
#include <stdexcept>
#include <string>

namespace distillery {

// Anything that stops a run: bad data, a corrupt checkpoint, a NaN loss. Exit code 1.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  virtual int exit_code() const { return 1; }
};

// A bad config key, value or type, or a file named by the config that is missing. Exit code 2.
class ConfigError : public Error {
 public:
  using Error::Error;
  int exit_code() const override { return 2; }
};

// A data file that is missing, truncated or malformed.
class DataError : public Error {
 public:
  using Error::Error;
};

}  // namespace distillery
