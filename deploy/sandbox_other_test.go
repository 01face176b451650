//go:build !(linux && amd64)

package deploy_test

import (
	"testing"

	"github.com/loopgate/loopgate/internal/testenv"
)

// The seccomp emulation of the gate unit is written for linux/amd64, the
// platform the units target.
func sandboxSubtest(t *testing.T, _, _, _ string, _ int) {
	testenv.Unavailable(t, "the gate unit's seccomp emulation runs on linux/amd64 only")
}
