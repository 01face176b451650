package testenv

import (
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// DBProxy forwards a Unix socket to a test database's, and can be cut to
// make the database unreachable (open connections drop, new ones are
// refused, as when the database host goes away) and restored.
type DBProxy struct {
	t      testing.TB
	target string // the server's socket path
	path   string // our socket path
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

// NewDBProxy returns a running proxy for the database at dbURL (a
// Unix-socket URL, as DatabaseURL gives) and the URL that goes through it.
// It is cut when the test ends.
func NewDBProxy(t testing.TB, dbURL string) (*DBProxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	host, port := q.Get("host"), q.Get("port")
	if !strings.HasPrefix(host, "/") || port == "" {
		t.Fatalf("proxy needs a Unix-socket database URL, got host %q port %q", host, port)
	}
	dir, err := os.MkdirTemp("", "lgproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &DBProxy{t: t, target: filepath.Join(host, ".s.PGSQL."+port), path: filepath.Join(dir, ".s.PGSQL."+port), conns: map[net.Conn]bool{}}
	p.Restore()
	t.Cleanup(p.Cut)
	q.Set("host", dir)
	u.RawQuery = q.Encode()
	return p, u.String()
}

// Restore accepts connections again.
func (p *DBProxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		return
	}
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		p.t.Fatal(err)
	}
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
}

func (p *DBProxy) serve(c net.Conn) {
	s, err := net.Dial("unix", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { io.Copy(s, c); s.Close(); c.Close() }()
	io.Copy(c, s)
	c.Close()
	s.Close()
}

// Cut drops every connection and refuses new ones: the database is gone.
func (p *DBProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
