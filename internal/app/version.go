package app

import "runtime/debug"

// version is set at build time with -ldflags "-X ...app.version=v1.2.3".
var version = ""

// Version is the server's version: the one set at build time, else the
// module version or VCS revision recorded by the Go toolchain.
func Version() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
