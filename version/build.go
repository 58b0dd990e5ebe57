package version

import "runtime/debug"

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/treff-im/treff" && d.Version != "" && d.Version != "(devel)" {
				return d.Version
			}
		}
		if bi.Main.Path == "github.com/treff-im/treff" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "devel"
}
