package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

var fake *fakeglobus.Server

func TestMain(m *testing.M) {
	s, err := fakeglobus.Start(fakeglobus.Binary("../../../../target/release/fake-globus"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "actionprovider tests:", err)
		os.Exit(1)
	}
	fake = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func fakeEnv() map[string]string {
	return map[string]string{
		"TC_CLIENT_ID":     fakeglobus.ClientID,
		"TC_CLIENT_SECRET": fakeglobus.ClientSecret,
		"TC_SCOPES":        fakeglobus.TestScope + ", openid",
		"TC_AUTH_URL":      fake.URL,
		"TC_GROUPS_URL":    fake.URL,
		"TC_ADDR":          "127.0.0.1:0",
	}
}

func TestLoadOptions(t *testing.T) {
	o, err := loadOptions([]string{"-scopes", "a b", "-runnable-by", "public,x"}, env(fakeEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.ClientID != fakeglobus.ClientID || strings.Join(o.cfg.ExpectedScopes, "|") != "a|b" ||
		o.addr != "127.0.0.1:0" || strings.Join(o.runnableBy, "|") != "public|x" || o.cfg.AuthURL != fake.URL {
		t.Fatalf("%+v", o)
	}
	for _, missing := range []string{"TC_CLIENT_ID", "TC_CLIENT_SECRET", "TC_SCOPES"} {
		e := fakeEnv()
		delete(e, missing)
		if _, err := loadOptions(nil, env(e)); err == nil || !strings.Contains(err.Error(), missing) {
			t.Errorf("without %s: %v", missing, err)
		}
	}
}

type client struct {
	t    *testing.T
	base string
}

func (c client) do(method, path, token, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &out); err != nil {
		c.t.Fatalf("%s %s: %d %q", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// TestActionProvider runs the whole program (run) against the fake server.
func TestActionProvider(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, env(fakeEnv()), pw)
		// A run that ends before it listens (a configuration or library error) must fail the
		// test, not leave it waiting for the "listening on" line.
		_ = pw.CloseWithError(fmt.Errorf("run ended: %v", err))
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	c := client{t, strings.TrimSpace(strings.TrimPrefix(line, "listening on "))}

	if code, d := c.do("GET", "/", "", ""); code != 200 || d["globus_auth_scope"] != fakeglobus.TestScope {
		t.Fatalf("describe: %d %v", code, d)
	}
	if code, d := c.do("POST", "/run", "", `{"body":{"echo_string":"hi"}}`); code != 401 {
		t.Fatalf("run without a token: %d %v", code, d)
	}
	if code, _ := c.do("POST", "/run", "tok-inactive", `{"body":{"echo_string":"hi"}}`); code != 401 {
		t.Fatalf("run with an inactive token: %d", code)
	}
	if code, _ := c.do("POST", "/run", "tok-valid", `{"body":{}}`); code != 400 {
		t.Fatalf("run without echo_string: %d", code)
	}
	bob := "urn:globus:auth:identity:" + fakeglobus.BobID
	code, a := c.do("POST", "/run", "tok-valid",
		`{"request_id":"r1","body":{"echo_string":"hi"},"monitor_by":["`+bob+`"]}`)
	if code != 202 || a["status"] != "SUCCEEDED" || a["creator_id"] != "urn:globus:auth:identity:"+fakeglobus.AliceID ||
		a["details"].(map[string]any)["echo_string"] != "hi" {
		t.Fatalf("run: %d %v", code, a)
	}
	id := a["action_id"].(string)
	if _, again := c.do("POST", "/run", "tok-valid", `{"request_id":"r1","body":{"echo_string":"hi"}}`); again["action_id"] != id {
		t.Fatal("a retried request made a new action")
	}
	if code, s := c.do("GET", "/"+id+"/status", "tok-valid", ""); code != 200 || s["action_id"] != id {
		t.Fatalf("status (creator): %d %v", code, s)
	}
	if code, _ := c.do("GET", "/"+id+"/status", "tok-bob", ""); code != 200 {
		t.Fatalf("status (monitor): %d", code)
	}
	if code, e := c.do("POST", "/"+id+"/release", "tok-bob", ""); code != 403 {
		t.Fatalf("release (monitor): %d %v", code, e)
	}
	// Manage by group: Alice is an admin of GroupAdmin; Bob is in no group.
	code, a2 := c.do("POST", "/run", "tok-bob",
		`{"body":{"echo_string":"yo"},"manage_by":["urn:globus:groups:id:`+fakeglobus.GroupAdmin+`"]}`)
	if code != 202 {
		t.Fatalf("run (bob): %d %v", code, a2)
	}
	if code, _ := c.do("POST", "/"+a2["action_id"].(string)+"/cancel", "tok-valid", ""); code != 200 {
		t.Fatalf("cancel by a group manager: %d", code)
	}
	if code, _ := c.do("POST", "/"+id+"/release", "tok-valid", ""); code != 200 {
		t.Fatalf("release: %d", code)
	}
	if code, _ := c.do("GET", "/"+id+"/status", "tok-valid", ""); code != 404 {
		t.Fatalf("status after release: %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
}

func TestRunRejectsBadCredentials(t *testing.T) {
	e := fakeEnv()
	e["TC_CLIENT_SECRET"] = "wrong"
	err := run(context.Background(), nil, env(e), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "TC_CREDENTIALS_REJECTED") {
		t.Fatalf("got %v", err)
	}
}
