package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
)

// Config is what every subcommand shares.
type Config struct {
	DatabaseURL string
	ModelDir    string
	Mirrors     []string
	Threshold   float64
	Detector    facerec.Detector
	SharedDir   string
}

type envVar struct{ name, help string }

var envVars = []envVar{
	{"LOOPGATE_DATABASE_URL", "PostgreSQL URL (default: the project-local cluster of deploy/localdb.sh)"},
	{"LOOPGATE_PG_DIR", "project-local cluster directory (default .loopgate/pg)"},
	{"LOOPGATE_PG_PORT", "project-local cluster port (default 55432)"},
	{"LOOPGATE_MODEL_DIR", "verified model files (default .loopgate/models)"},
	{"LOOPGATE_MODEL_MIRROR", "local mirror directories for `models fetch`, ':'-separated"},
	{"LOOPGATE_MATCH_THRESHOLD", fmt.Sprintf("per-comparison Euclidean threshold for identify (default %.2f; gate nodes use their fusion config)", engine.DefaultMatchThreshold)},
	{"LOOPGATE_DETECTOR", "hog, cnn or hog+cnn (default hog+cnn: CNN only when HOG finds nothing)"},
	{"LOOPGATE_SHARED_DIR", "the shared data set used by `demo` (default ../shared)"},
}

// LoadConfig reads the environment; relative defaults resolve against the
// working directory (the project root when run through make).
func LoadConfig() (Config, error) {
	cfg := Config{
		DatabaseURL: os.Getenv("LOOPGATE_DATABASE_URL"),
		ModelDir:    envOr("LOOPGATE_MODEL_DIR", ".loopgate/models"),
		Threshold:   engine.DefaultMatchThreshold,
		Detector:    facerec.Detector(envOr("LOOPGATE_DETECTOR", string(facerec.DetectorHOGThenCNN))),
		SharedDir:   envOr("LOOPGATE_SHARED_DIR", "../shared"),
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = LocalDatabaseURL("loopgate")
	}
	if m := os.Getenv("LOOPGATE_MODEL_MIRROR"); m != "" {
		cfg.Mirrors = filepath.SplitList(m)
	}
	if t := os.Getenv("LOOPGATE_MATCH_THRESHOLD"); t != "" {
		v, err := strconv.ParseFloat(t, 64)
		if err != nil || v <= 0 || v >= 2 {
			return cfg, fmt.Errorf("LOOPGATE_MATCH_THRESHOLD=%q: want a Euclidean distance in (0, 2)", t)
		}
		cfg.Threshold = v
	}
	return cfg, nil
}

// LocalDatabaseURL is the URL of the project-local cluster started by
// deploy/localdb.sh, which listens only on a Unix socket.
func LocalDatabaseURL(db string) string {
	dir := envOr("LOOPGATE_PG_DIR", ".loopgate/pg")
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	port := envOr("LOOPGATE_PG_PORT", "55432")
	return fmt.Sprintf("postgres://loopgate@/%s?host=%s&port=%s&sslmode=disable", db, filepath.Join(dir, "run"), port)
}

func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}
