package daemon

import (
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/policy"
)

// hostPolicy maps the policy keys of the daemon's configuration to the
// policy they ask for: policy judges stacks and knows nothing of the
// configuration file.
func hostPolicy(c config.Policy) policy.Policy {
	return policy.Resolve(policy.Settings{
		Preset:            c.Preset,
		Privileged:        c.Privileged,
		HostNamespaces:    c.HostNamespaces,
		Devices:           c.Devices,
		DockerSocket:      c.DockerSocket,
		PathsOutsideStack: c.PathsOutsideStack,
		OtherContainers:   c.OtherContainers,
		Capabilities:      c.Capabilities,
		BindPaths:         c.BindPaths,
		SecurityOptions:   c.SecurityOptions,
		VolumeDrivers:     c.VolumeDrivers,
		VolumeOptions:     c.VolumeOptions,
	})
}
