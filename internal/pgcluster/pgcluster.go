// Package pgcluster runs throwaway PostgreSQL clusters for tests that need
// to stop, kill or replicate a database: a primary, and streaming replicas
// made with pg_basebackup — PostgreSQL's own replication, nothing simulated.
// Each cluster listens only on a Unix socket in its own directory.
//
// As root, clusters belong to the unprivileged loopgate-pg user (initdb
// refuses root), like deploy/localdb.sh's.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/loopgate/loopgate/internal/testenv"
)

// BinDir holds PostgreSQL's server programs (Debian's layout).
var BinDir = envOr("PG_BINDIR", "/usr/lib/postgresql/15/bin")

const (
	osUser = "loopgate-pg"
	dbUser = "loopgate"
	// Database is the database every cluster is created with.
	Database = "loopgate"
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Cluster is one running (or stopped) PostgreSQL server.
type Cluster struct {
	Name    string
	Dir     string // data directory
	Socket  string // socket directory
	Port    int
	log     string
	t       testing.TB
	replica bool
}

var portSeq atomic.Int32

// freePort picks a port no socket in /tmp-like dirs uses; the clusters
// listen on Unix sockets only, so the number just names the socket file.
func freePort() int {
	// Spread over a range unlikely to clash with deploy/localdb.sh (55432).
	return 56000 + int(portSeq.Add(1)) + os.Getpid()%500*4
}

func asOwner(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", osUser, "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

func run(cmd *exec.Cmd) error {
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return nil
}

// ownedDir makes a directory the cluster's owner can use, removed when the
// test ends.
func ownedDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup(osUser)
		if err != nil {
			testenv.Unavailable(t, "user %s does not exist: run `make test` once (deploy/localdb.sh creates it): %v", osUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func available(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(BinDir, "initdb")); err != nil {
		testenv.Unavailable(t, "PostgreSQL server programs not found in %s (PG_BINDIR): %v", BinDir, err)
	}
}

// NewPrimary creates and starts a cluster set up to stream to replicas,
// with database Database and the vector extension in it. It is stopped
// (immediately) when the test ends.
func NewPrimary(t testing.TB, name string) *Cluster {
	t.Helper()
	available(t)
	root := ownedDir(t, "lgpg-")
	c := &Cluster{Name: name, Dir: filepath.Join(root, "data"), Socket: root, Port: freePort(), log: filepath.Join(root, "server.log"), t: t}
	if err := run(asOwner(filepath.Join(BinDir, "initdb"), "-D", c.Dir, "-U", dbUser, "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8")); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`
listen_addresses = ''
port = %d
unix_socket_directories = '%s'
unix_socket_permissions = 0777
shared_buffers = 32MB
max_connections = 40
wal_level = replica
max_wal_senders = 5
hot_standby = on
hot_standby_feedback = on
wal_keep_size = 64MB
fsync = on
`, c.Port, c.Socket)
	if err := appendFile(c.Dir, "postgresql.conf", conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.stop("immediate") })
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if err := run(asOwner(filepath.Join(BinDir, "createdb"), "-h", c.Socket, "-p", strconv.Itoa(c.Port), "-U", dbUser, Database)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS vector`); err != nil {
		t.Fatalf("pgcluster: create extension vector (is pgvector installed? make test builds it): %v", err)
	}
	return c
}

func appendFile(dir, name, text string) error {
	cmd := asOwner("sh", "-c", `cat >> "$1"`, "sh", filepath.Join(dir, name))
	cmd.Stdin = strings.NewReader(text)
	return run(cmd)
}

// NewReplica makes a streaming replica of c with pg_basebackup and starts
// it. It replays the primary's WAL continuously and is read-only.
func (c *Cluster) NewReplica(t testing.TB, name string) *Cluster {
	t.Helper()
	root := ownedDir(t, "lgpg-")
	r := &Cluster{Name: name, Dir: filepath.Join(root, "data"), Socket: root, Port: freePort(), log: filepath.Join(root, "server.log"), t: t, replica: true}
	if err := run(asOwner(filepath.Join(BinDir, "pg_basebackup"), "-h", c.Socket, "-p", strconv.Itoa(c.Port), "-U", dbUser,
		"-D", r.Dir, "-X", "stream", "-R", "--checkpoint=fast")); err != nil {
		t.Fatal(err)
	}
	// The copy carries the primary's port and socket; the replica gets its own.
	conf := fmt.Sprintf("\nport = %d\nunix_socket_directories = '%s'\n", r.Port, r.Socket)
	if err := appendFile(r.Dir, "postgresql.auto.conf", conf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop("immediate") })
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return r
}

// URL is the connection URL of database Database.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable", dbUser, Database, c.Socket, c.Port)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() error {
	return run(asOwner(filepath.Join(BinDir, "pg_ctl"), "-D", c.Dir, "-l", c.log, "-w", "-t", "60", "start"))
}

// Stop shuts the server down (fast mode: sessions are cut, no data lost).
func (c *Cluster) Stop() error { return c.stop("fast") }

func (c *Cluster) stop(mode string) error {
	if _, err := os.Stat(filepath.Join(c.Dir, "postmaster.pid")); err != nil {
		return nil
	}
	return run(asOwner(filepath.Join(BinDir, "pg_ctl"), "-D", c.Dir, "-m", mode, "-w", "stop"))
}

// Kill sends SIGKILL to the postmaster and its children at once, like a
// power cut or the OOM killer taking the service: a crash, not a shutdown.
// Start afterwards runs crash recovery.
func (c *Cluster) Kill() error {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return err
	}
	procs := append(children(pid), pid)
	for _, p := range procs {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		alive := false
		for _, p := range procs {
			if syscall.Kill(p, 0) == nil {
				if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p)); err == nil && !strings.Contains(string(st), ") Z ") {
					alive = true
				}
			}
		}
		if !alive {
			// A postmaster reparented to a PID 1 that does not reap
			// stays a zombie, and PostgreSQL takes a zombie's PID in
			// postmaster.pid for a live server. It is dead: remove the
			// stale locks (data directory and socket) as a reboot would.
			sock := filepath.Join(c.Socket, fmt.Sprintf(".s.PGSQL.%d", c.Port))
			return run(asOwner("rm", "-f", filepath.Join(c.Dir, "postmaster.pid"), sock, sock+".lock"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("pgcluster: server processes still alive after SIGKILL")
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		// Fields after the ")" of the command: state, ppid, ...
		s := string(st)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// ReplayLag is how far the replica's replay is behind the primary's WAL,
// in bytes, as the primary's pg_stat_replication reports it.
func (c *Cluster) ReplayLag(ctx context.Context) (int64, error) {
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var lag *int64
	err = conn.QueryRow(ctx, `SELECT max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint FROM pg_stat_replication`).Scan(&lag)
	if err != nil {
		return 0, err
	}
	if lag == nil {
		return 0, errors.New("pgcluster: no replica is streaming")
	}
	return *lag, nil
}

// Log returns the server log (for a failing test's output).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}
