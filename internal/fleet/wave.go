package fleet

import (
	"hash/fnv"
	"path"
)

// Host is what choosing a wave sees of a host.
type Host struct {
	Name   string
	Labels map[string]string
}

// WaveOf is the index of the first wave whose selector matches host, or
// len(waves) when none does: such a host is in an implicit last wave,
// after every named one (a fleet file without a catch-all still reaches
// every host, last). Every host computes this alone, the same way.
func WaveOf(host Host, waves []Wave) int {
	for i, w := range waves {
		if w.matches(host) {
			return i
		}
	}
	return len(waves)
}

// ImplicitWave names the wave of the hosts no wave selects.
const ImplicitWave = "(rest)"

// WaveName is the name of wave i of r, ImplicitWave past the last.
func (r *Rollout) WaveName(i int) string {
	if i >= 0 && i < len(r.Waves) {
		return r.Waves[i].Name
	}
	return ImplicitWave
}

// WaveIndex is the index of the wave called name, ImplicitWave included,
// or -1 when r has none by that name.
func (r *Rollout) WaveIndex(name string) int {
	for i, w := range r.Waves {
		if w.Name == name {
			return i
		}
	}
	if name == ImplicitWave {
		return len(r.Waves)
	}
	return -1
}

func (w Wave) matches(h Host) bool {
	switch w.Kind {
	case SelectLabels:
		for k, v := range w.Labels {
			if got, ok := h.Labels[k]; !ok || got != v {
				return false
			}
		}
		return true
	case SelectNames:
		for _, g := range w.Names {
			if ok, _ := path.Match(g, h.Name); ok {
				return true
			}
		}
		return false
	case SelectPercent:
		return Bucket(h.Name) < w.Percent
	}
	return true
}

// Bucket places a host name on the percent scale, [0, 100) in steps of
// 0.01: FNV-1a (64 bit) of the name alone, modulo 10,000. The stack is
// not hashed in, so a host sits at the same place for every stack and the
// same few hosts go early for all of them, as canaries usually should;
// and it is stable across versions of gitopsd and machines.
func Bucket(hostName string) float64 {
	h := fnv.New64a()
	h.Write([]byte(hostName))
	return float64(h.Sum64()%10000) / 100
}
