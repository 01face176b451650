package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/enroll"
)

// passwordEnv gives a new password to `user add` and `user passwd` for
// automation (a --password flag would leak into ps and shell history).
const passwordEnv = "LOOPGATE_PASSWORD"

const (
	userUsage  = "user add --username U --role officer|admin [--password-file F] | user list | user disable U | user passwd U [--password-file F]"
	tokenUsage = "token add --name N --role officer|admin | token list | token revoke ID"
)

// openAccounts opens the database only: account commands load no models.
func openAccounts(ctx context.Context, cfg Config) (*enroll.Accounts, func(), error) {
	g, _, err := gallery.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w\n(is the database running? `make db` starts the project-local cluster)", err)
	}
	return enroll.NewAccounts(g.Pool()), g.Close, nil
}

// parseWithPositional parses flags that may come before or after the
// positional arguments ("user passwd alice --password-file f").
func parseWithPositional(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runUser manages officers' accounts as the CLI actor: whoever runs it on
// the server holds the database credentials, so it may create the first admin.
func runUser(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, userUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	var username, role, passwordFile *string
	switch sub {
	case "add":
		username = fs.String("username", "", "the account's login: 2-64 lowercase letters, digits, '.', '_' or '-'")
		role = fs.String("role", "", "officer or admin")
		fallthrough
	case "passwd":
		passwordFile = fs.String("password-file", "", "read the password from this file's first line (else $"+passwordEnv+", else the terminal, twice, without echo)")
	case "list", "disable":
	default:
		return fmt.Errorf("%w: unknown user subcommand %q: %s", errUsage, sub, userUsage)
	}
	pos, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"add": 0, "list": 0, "disable": 1, "passwd": 1}[sub]
	if len(pos) != want {
		return fmt.Errorf("%w: %s", errUsage, userUsage)
	}
	if sub == "add" && (*username == "" || *role == "") {
		return fmt.Errorf("%w: user add needs --username and --role", errUsage)
	}
	var password string
	if passwordFile != nil {
		// Read before touching the database: a typo costs nothing.
		if password, err = newPassword(*passwordFile); err != nil {
			return err
		}
	}
	acc, closeDB, err := openAccounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	actor := cliActor(enroll.RoleAdmin)
	switch sub {
	case "add":
		a, err := acc.AddUser(ctx, actor, *username, password, *role)
		if err != nil {
			return err
		}
		fmt.Printf("created %s account %q (id %d)\n", a.Role, a.Username, a.ID)
	case "list":
		users, err := acc.ListUsers(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tROLE\tCREATED\tSTATUS")
		for _, u := range users {
			status := "active"
			if u.DisabledAt != nil {
				status = "disabled " + u.DisabledAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Username, u.Role, u.CreatedAt.Local().Format(time.DateTime), status)
		}
		return tw.Flush()
	case "disable":
		if err := acc.DisableUser(ctx, actor, pos[0]); err != nil {
			return err
		}
		fmt.Printf("disabled %q: it can no longer log in, and its web sessions end at their next request\n", pos[0])
	case "passwd":
		if err := acc.SetPassword(ctx, actor, pos[0], password); err != nil {
			return err
		}
		fmt.Printf("password of %q changed\n", pos[0])
	}
	return nil
}

// newPassword reads a new password from a file, the environment, or the
// terminal (twice, without echo), in that order.
func newPassword(file string) (string, error) {
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			slog.Warn("password file is readable by group or others; chmod 600 it", "file", file, "mode", st.Mode().Perm())
		}
		data, err := readBounded(file, 4096)
		if err != nil {
			return "", fmt.Errorf("--password-file: %w", err)
		}
		line, _, _ := bytes.Cut(data, []byte("\n"))
		return string(bytes.TrimSuffix(line, []byte("\r"))), nil
	}
	if v := os.Getenv(passwordEnv); v != "" {
		return v, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", fmt.Errorf("%w: no terminal to read the password from: use --password-file FILE or $%s", errUsage, passwordEnv)
	}
	read := func(prompt string) (string, error) {
		fmt.Fprint(os.Stderr, prompt)
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(pw), nil
	}
	first, err := read(fmt.Sprintf("new password (at least %d characters): ", enroll.MinPasswordLength))
	if err != nil {
		return "", err
	}
	second, err := read("again: ")
	if err != nil {
		return "", err
	}
	if first != second {
		return "", errors.New("the two passwords differ: nothing changed")
	}
	return first, nil
}

// runToken manages API tokens as the CLI actor.
func runToken(ctx context.Context, cfg Config, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, tokenUsage)
	}
	sub := args[0]
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	var name, role *string
	switch sub {
	case "add":
		name = fs.String("name", "", "what the token is for (unique), e.g. lane-a-reader")
		role = fs.String("role", "", "officer or admin")
	case "list", "revoke":
	default:
		return fmt.Errorf("%w: unknown token subcommand %q: %s", errUsage, sub, tokenUsage)
	}
	pos, err := parseWithPositional(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"add": 0, "list": 0, "revoke": 1}[sub]
	if len(pos) != want {
		return fmt.Errorf("%w: %s", errUsage, tokenUsage)
	}
	if sub == "add" && (*name == "" || *role == "") {
		return fmt.Errorf("%w: token add needs --name and --role", errUsage)
	}
	var id int64
	if sub == "revoke" {
		if id, err = strconv.ParseInt(pos[0], 10, 64); err != nil || id <= 0 {
			return fmt.Errorf("%w: token revoke %q: want the token's numeric ID (token list shows it)", errUsage, pos[0])
		}
	}
	acc, closeDB, err := openAccounts(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeDB()
	actor := cliActor(enroll.RoleAdmin)
	switch sub {
	case "add":
		secret, t, err := acc.CreateToken(ctx, actor, *name, *role)
		if err != nil {
			return err
		}
		// The secret alone goes to stdout, so `S=$(loopgate token add ...)` captures it.
		fmt.Fprintf(os.Stderr, "created %s token %d %q; its secret follows and is shown only this once:\n", t.Role, t.ID, t.Name)
		fmt.Println(secret)
	case "list":
		tokens, err := acc.ListTokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED BY\tCREATED\tLAST USED\tSTATUS")
		for _, t := range tokens {
			status := "active"
			if t.RevokedAt != nil {
				status = "revoked " + t.RevokedAt.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedBy,
				t.CreatedAt.Local().Format(time.DateTime), orNever(t.LastUsedAt), status)
		}
		return tw.Flush()
	case "revoke":
		if err := acc.RevokeToken(ctx, actor, id); err != nil {
			return err
		}
		fmt.Printf("revoked token %d\n", id)
	}
	return nil
}

func orNever(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}
