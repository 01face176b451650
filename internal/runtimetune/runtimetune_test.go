package runtimetune

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	// Links go-face, and so dlib and the system's libblas.so.3, into the
	// test binary as into loopgate's.
	_ "github.com/loopgate/loopgate/engine/facerec"
)

// mappedBLAS reads /proc/self/maps for the libblas.so.3 the dynamic loader
// mapped: an observation independent of dlsym.
func mappedBLAS(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 6 && strings.HasPrefix(filepath.Base(fields[5]), "libblas.so") {
			return fields[5]
		}
	}
	return ""
}

func TestApplyFindsTheMappedBLAS(t *testing.T) {
	got := Apply()
	if again := Apply(); again != got || Current() != got {
		t.Fatalf("Apply is not idempotent: %+v then %+v", got, again)
	}
	t.Logf("tuning: %+v", got)
	mapped := mappedBLAS(t)
	if mapped == "" {
		t.Fatal("no libblas.so mapped: the test binary should link go-face")
	}
	real, err := filepath.EvalSymlinks(mapped)
	if err != nil {
		real = mapped
	}
	if got.BLASLibrary != real {
		t.Errorf("cblas_sgemm comes from %q, the mapped libblas is %q", got.BLASLibrary, real)
	}
	var want string
	switch {
	case strings.Contains(real, "openblas"):
		want = BLASOpenBLAS
	case strings.Contains(real, "/atlas/"):
		want = BLASATLAS
	default:
		want = BLASOther
	}
	if got.BLAS != want {
		t.Errorf("BLAS %q, want %q for %s", got.BLAS, want, real)
	}
	if got.BLAS == BLASOpenBLAS {
		wantThreads := 1
		if got.BLASThreadsFromEnv != "" {
			wantThreads, _ = strconv.Atoi(os.Getenv(got.BLASThreadsFromEnv))
		}
		if got.BLASThreads != wantThreads || !strings.Contains(got.BLASConfig, "OpenBLAS") {
			t.Errorf("OpenBLAS threads %d (env %q), config %q; want %d threads", got.BLASThreads, got.BLASThreadsFromEnv, got.BLASConfig, wantThreads)
		}
	}
	if os.Getenv("LOOPGATE_MALLOC_TUNE") == "" && (!got.MallocTuned || got.Err != nil) {
		t.Errorf("malloc not tuned: %v", got.Err)
	}
}

// TestMallocSettingsAccepted checks that this glibc takes both thresholds
// (mallopt returns 0 for a value it refuses).
func TestMallocSettingsAccepted(t *testing.T) {
	if err := Malloc(); err != nil {
		t.Fatal(err)
	}
	if !mallopt(mmapThresholdParam, MmapThreshold) {
		t.Errorf("M_MMAP_THRESHOLD=%d refused", MmapThreshold)
	}
}

func TestApplyHonoursOptOut(t *testing.T) {
	t.Setenv("LOOPGATE_MALLOC_TUNE", "off")
	t.Setenv("OPENBLAS_NUM_THREADS", "1")
	got := apply()
	if got.MallocTuned {
		t.Error("LOOPGATE_MALLOC_TUNE=off ignored")
	}
	if got.BLAS == BLASOpenBLAS && got.BLASThreadsFromEnv != "OPENBLAS_NUM_THREADS" {
		t.Errorf("OPENBLAS_NUM_THREADS in the environment not reported: %+v", got)
	}
}
