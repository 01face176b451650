package models

import (
	"compress/bzip2"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FetchOptions says where Fetch may look for model files.
type FetchOptions struct {
	// Dir is the model directory to fill.
	Dir string
	// Mirrors are local directories holding model files (plain or .bz2),
	// searched in order before any download. Offline sites need only these.
	Mirrors []string
	// NoDownload forbids fetching from the upstream URLs.
	NoDownload bool
	// Client is the HTTP client for downloads; nil means one with sane timeouts.
	Client *http.Client
	// Manifest defaults to the package's Manifest.
	Manifest []Model
	// Logf receives progress lines; nil discards them.
	Logf func(format string, args ...any)
}

// Fetch makes every manifest file present and verified in opts.Dir. Files
// already there and valid are kept; others come from the first mirror that
// has an acceptable variant, else from the upstream URLs.
func Fetch(ctx context.Context, opts FetchOptions) ([]Installed, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 15 * time.Second}).DialContext,
			TLSHandshakeTimeout:   15 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("models: create %s: %w", opts.Dir, err)
	}
	if opts.Manifest == nil {
		opts.Manifest = Manifest
	}
	var out []Installed
	for _, m := range opts.Manifest {
		in, err := VerifyOne(opts.Dir, m)
		if err == nil {
			opts.Logf("models: %s ok (%s)", m.Name, in.Variant.Label)
			out = append(out, in)
			continue
		}
		var mm *MismatchError
		if errors.As(err, &mm) {
			opts.Logf("models: %s present but unverified, replacing it: %v", m.Name, err)
		} else if !errors.Is(err, ErrMissing) {
			return out, err
		}
		in, err = fetchOne(ctx, opts, m)
		if err != nil {
			return out, err
		}
		if in.Variant.Warning != "" {
			opts.Logf("models: WARNING %s: %s", m.Name, in.Variant.Warning)
		}
		out = append(out, in)
	}
	return out, nil
}

func fetchOne(ctx context.Context, opts FetchOptions, m Model) (Installed, error) {
	var tried []string
	for _, mirror := range opts.Mirrors {
		for _, v := range m.Variants {
			for _, cand := range []struct {
				path       string
				compressed bool
			}{{filepath.Join(mirror, v.FileName), false}, {filepath.Join(mirror, v.FileName+".bz2"), true}} {
				if _, err := os.Stat(cand.path); err != nil {
					continue
				}
				f, err := os.Open(cand.path)
				if err != nil {
					tried = append(tried, cand.path+": "+err.Error())
					continue
				}
				in, err := install(opts, m, v, f, cand.compressed, cand.path)
				f.Close()
				if err != nil {
					tried = append(tried, err.Error())
					continue
				}
				return in, nil
			}
		}
	}
	if !opts.NoDownload {
		for _, v := range m.Variants {
			for _, url := range v.URLs {
				in, err := download(ctx, opts, m, v, url)
				if err != nil {
					tried = append(tried, err.Error())
					if ctx.Err() != nil {
						return Installed{}, ctx.Err()
					}
					continue
				}
				return in, nil
			}
		}
	} else {
		tried = append(tried, "downloads disabled")
	}
	return Installed{}, fmt.Errorf("models: no acceptable source for %s (mirrors: %s):\n  %s",
		m.Name, strings.Join(opts.Mirrors, ", "), strings.Join(tried, "\n  "))
}

func download(ctx context.Context, opts FetchOptions, m Model, v Variant, url string) (Installed, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Installed{}, err
	}
	opts.Logf("models: downloading %s", url)
	resp, err := opts.Client.Do(req)
	if err != nil {
		return Installed{}, fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Installed{}, fmt.Errorf("download %s: %s", url, resp.Status)
	}
	body := &progressReader{r: resp.Body, total: resp.ContentLength, name: filepath.Base(url), logf: opts.Logf, last: time.Now()}
	return install(opts, m, v, body, strings.HasSuffix(url, ".bz2"), url)
}

// install streams src (optionally bzip2) into the model directory, checking
// the archive MD5 and the file SHA256 before the file takes its final name.
// A plain file, from a mirror or a download, is only ever accepted against a
// recorded SHA256: nothing else would vouch for it.
func install(opts FetchOptions, m Model, v Variant, src io.Reader, compressed bool, source string) (Installed, error) {
	if !compressed && v.SHA256 == "" {
		return Installed{}, fmt.Errorf("%s: no sha256 is recorded for the %s variant, so only its .bz2 archive (md5-verified) is accepted",
			source, v.Label)
	}
	var archiveMD5 hash.Hash
	r := src
	if compressed {
		if v.ArchiveMD5 == "" {
			return Installed{}, fmt.Errorf("%s: no archive md5 recorded for the %s variant", source, v.Label)
		}
		archiveMD5 = md5.New()
		r = bzip2.NewReader(io.TeeReader(src, archiveMD5))
	}
	tmp, err := os.CreateTemp(opts.Dir, "."+m.Name+".partial-*")
	if err != nil {
		return Installed{}, fmt.Errorf("models: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if v.Size > 0 {
		// One byte over is enough to refuse: a bad source cannot fill the disk.
		r = io.LimitReader(r, v.Size+1)
	}
	fileHash := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, fileHash), r)
	if err != nil {
		return Installed{}, fmt.Errorf("%s: %w", source, err)
	}
	if compressed {
		// Drain what bzip2 did not need so the MD5 covers the whole archive.
		if _, err := io.Copy(archiveMD5, src); err != nil {
			return Installed{}, fmt.Errorf("%s: %w", source, err)
		}
		if got := hex.EncodeToString(archiveMD5.Sum(nil)); got != v.ArchiveMD5 {
			return Installed{}, fmt.Errorf("%s: archive md5 %s, want %s (%s variant)", source, got, v.ArchiveMD5, v.Label)
		}
	}
	if v.Size != 0 && n > v.Size {
		return Installed{}, fmt.Errorf("%s: more than %d bytes (%s variant)", source, v.Size, v.Label)
	}
	if v.Size != 0 && n != v.Size {
		return Installed{}, fmt.Errorf("%s: %d bytes, want %d (%s variant)", source, n, v.Size, v.Label)
	}
	digest := hex.EncodeToString(fileHash.Sum(nil))
	if v.SHA256 != "" && digest != v.SHA256 {
		return Installed{}, fmt.Errorf("%s: sha256 %s, want %s (%s variant)", source, digest, v.SHA256, v.Label)
	}
	if err := tmp.Sync(); err != nil {
		return Installed{}, err
	}
	if err := tmp.Close(); err != nil {
		return Installed{}, err
	}
	final := filepath.Join(opts.Dir, m.Name)
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return Installed{}, err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return Installed{}, fmt.Errorf("models: %w", err)
	}
	if err := writeOrigin(opts.Dir, m.Name, origin{Variant: v.Label, SHA256: digest, Source: source, FetchedAt: time.Now().UTC()}); err != nil {
		return Installed{}, fmt.Errorf("models: record origin of %s: %w", m.Name, err)
	}
	opts.Logf("models: %s installed from %s (%s variant, %d bytes, sha256 %s)", m.Name, source, v.Label, n, digest)
	return Installed{Model: m, Variant: v, Path: final, SHA256: digest, Pinned: v.SHA256 == ""}, nil
}

type progressReader struct {
	r     io.Reader
	total int64
	done  int64
	name  string
	logf  func(string, ...any)
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if time.Since(p.last) > 2*time.Second || (err == io.EOF && p.done > 0) {
		p.last = time.Now()
		if p.total > 0 {
			p.logf("models: %s %.1f/%.1f MB (%d%%)", p.name, float64(p.done)/1e6, float64(p.total)/1e6, p.done*100/p.total)
		} else {
			p.logf("models: %s %.1f MB", p.name, float64(p.done)/1e6)
		}
	}
	return n, err
}
