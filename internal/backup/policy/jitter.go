package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// DefaultJitterMax caps the jitter of any schedule (see Schedule.JitterMax):
// enough to spread a fleet's snapshots off a shared registry or NAS, small
// enough that "03:00" still reads as 03:00 to an operator.
const DefaultJitterMax = 5 * time.Minute

// Jitter is a delay in [0, maxDelay) that keeps a fleet from snapshotting
// in step; maxDelay <= 0 gives 0. The delay is derived from a hash of key (say
// host/stack/volume), so a job keeps the same offset across restarts and
// an operator can predict when it runs. An empty key gives a random delay,
// which differs on every call: only for callers that ask once.
func Jitter(key string, maxDelay time.Duration) time.Duration {
	if maxDelay <= 0 {
		return 0
	}
	if key == "" {
		return rand.N(maxDelay)
	}
	sum := sha256.Sum256([]byte(key))
	// Modulo bias is under 1e-5 for any delay below a day: irrelevant here.
	return time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(maxDelay))
}
