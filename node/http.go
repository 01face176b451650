package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/claims"
	"github.com/loopgate/loopgate/server"
)

// httpSide is the node's HTTP server with what it shows: the decision
// stream (also a sink) and the latest annotated frame per camera.
type httpSide struct {
	srv    *server.Server
	events *server.Broadcaster
	live   *server.LiveFrames
	ln     net.Listener
}

func newHTTPSide(n *Node) (*httpSide, error) {
	h := &httpSide{events: server.NewBroadcaster(server.BroadcasterOptions{})}
	var names []string
	for _, c := range n.cfg.Cameras {
		names = append(names, c.Name)
	}
	h.live = server.NewLiveFrames(names...)
	var tokens []server.Token
	for _, t := range n.cfg.HTTP.Tokens {
		tokens = append(tokens, server.Token{Name: t.Name, SHA256: t.SHA256, Roles: t.Roles})
	}
	deps := server.Deps{
		Gatherer: n.reg,
		Metrics:  server.NewMetrics(n.reg),
		Events:   h.events,
		Frames:   h.live,
		Logger:   n.log,
		Checks: []server.Check{
			{Name: "models", Fn: func(context.Context) error {
				if n.pool == nil || len(n.dets) != len(n.cameras) {
					return errors.New("models not loaded")
				}
				return nil
			}},
			n.galleryCheck(),
			{Name: "cameras", Fn: func(context.Context) error {
				var down []string
				for _, c := range n.cameras {
					if !c.Stats().Up {
						down = append(down, c.Name())
					}
				}
				if len(down) > 0 {
					return fmt.Errorf("cameras not delivering frames: %v", down)
				}
				return nil
			}},
		},
	}
	if n.claims != nil {
		deps.Claimer = claimer{n.claims}
	}
	srv, err := server.New(server.Config{
		Addr: n.cfg.HTTP.Addr, TLSCertFile: n.cfg.HTTP.TLSCert, TLSKeyFile: n.cfg.HTTP.TLSKey,
		Gate: n.cfg.Gate, Tokens: tokens,
		DefaultClaimTTL: n.cfg.Claims.DefaultTTL, MaxClaimTTL: n.cfg.Claims.MaxTTL,
	}, deps)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	h.srv = srv
	// Listen now, so a bad address fails at start and Addr is known.
	if h.ln, err = net.Listen("tcp", n.cfg.HTTP.Addr); err != nil {
		return nil, fmt.Errorf("http.addr: %w", err)
	}
	return h, nil
}

func (h *httpSide) run(ctx context.Context) error { return h.srv.Serve(ctx, h.ln) }

// Addr is where the node's HTTP side listens ("" without one).
func (n *Node) Addr() string {
	if n.http == nil {
		return ""
	}
	return n.http.ln.Addr().String()
}

// claimer adapts the engine's claim registry to the HTTP API.
type claimer struct{ r *claims.Registry }

func (c claimer) Claim(ctx context.Context, lane, externalID string, ttl time.Duration) (server.ClaimInfo, error) {
	cl, err := c.r.Add(ctx, lane, externalID, ttl)
	switch {
	case errors.Is(err, claims.ErrUnknownLane):
		return server.ClaimInfo{}, fmt.Errorf("%w: %v", server.ErrUnknownLane, err)
	case errors.Is(err, engine.ErrUnknownPerson):
		return server.ClaimInfo{}, fmt.Errorf("%w: %v", server.ErrUnknownPerson, err)
	case errors.Is(err, engine.ErrGalleryStale):
		return server.ClaimInfo{}, fmt.Errorf("%w: %v", server.ErrGalleryStale, err)
	case err != nil:
		return server.ClaimInfo{}, err
	}
	return server.ClaimInfo{ID: cl.ID, Lane: cl.Lane, ExternalID: cl.Person.ExternalID, Expires: cl.Expires}, nil
}

// galleryCheck: the node decides from its gallery copy, so it is ready
// while the copy is fresh enough, database or not; /readyz shows the copy's
// age either way.
func (n *Node) galleryCheck() server.Check {
	return server.Check{Name: "gallery", Fn: func(context.Context) error { return n.copy.Stale(time.Now()) }, Detail: func() string {
		st := n.copy.Status()
		age := "never synced"
		if !st.FreshAsOf.IsZero() {
			age = fmt.Sprintf("copy age %.1fs", st.Age.Seconds())
		}
		return fmt.Sprintf("%s (max %s)", age, st.MaxStaleness)
	}}
}
