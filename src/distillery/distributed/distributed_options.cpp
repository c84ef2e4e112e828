#include "distillery/distributed/distributed_options.h"

#include "distillery/core/config.h"
#include "distillery/distributed/launch_environment.h"

namespace distillery {

DistributedOptions DistributedOptions::from_config(const ConfigSection& s) {
  DistributedOptions o;
  o.sync_batch_norm = s.get("sync_batch_norm", o.sync_batch_norm);
  o.bucket_mb = s.get("bucket_mb", o.bucket_mb);
  s.check(o.bucket_mb > 0 && o.bucket_mb <= 4096, "bucket_mb", "must be in (0, 4096]");
  if (s.has("timeout_s")) {
    o.timeout_s = s.get("timeout_s", o.timeout_s);
    s.check(o.timeout_s > 0, "timeout_s", "must be > 0");
  } else {
    o.timeout_s = timeout_from_environment(o.timeout_s);
  }
  o.backend = s.get_choice("backend", o.backend, {"gloo", "nccl"});
  return o;
}

}  // namespace distillery
