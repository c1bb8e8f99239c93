package tokenchecker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
)

// The examples run against the fake Globus server the tests start (fake.URL); a real service
// leaves AuthURL and GroupsURL empty.

func ExampleChecker_Middleware() {
	checker, err := tokenchecker.New(tokenchecker.Config{
		ClientID:       "test-client",
		ClientSecret:   "test-secret",
		ExpectedScopes: []string{"urn:globus:auth:scope:test:all"},
		AuthURL:        fake.URL,
		GroupsURL:      fake.URL,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()

	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state, _ := tokenchecker.FromContext(r.Context())
		fmt.Fprintf(w, "hello %s", state.Username)
	})
	srv := httptest.NewServer(checker.Middleware(hello))
	defer srv.Close()

	for _, auth := range []string{"Bearer tok-valid", "Bearer tok-expired", "Basic dXNlcjpwYXNz", ""} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.SplitN(string(body), `,"message"`, 2)[0])
	}
	// Output:
	// 200 hello alice@example.org
	// 401 {"error":{"code":"TC_TOKEN_EXPIRED"
	// 401 {"error":{"code":"TC_INVALID_ARGUMENT"
	// 401 {"error":{"code":"TC_INVALID_ARGUMENT"
}

func ExampleChecker_Authorize() {
	checker, err := tokenchecker.New(tokenchecker.Config{
		ClientID:       "test-client",
		ClientSecret:   "test-secret",
		ExpectedScopes: []string{"urn:globus:auth:scope:test:all"},
		AuthURL:        fake.URL,
		GroupsURL:      fake.URL,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()

	admins := []string{"urn:globus:groups:id:22222222-2222-4222-8222-222222222222"}
	for _, token := range []string{"tok-valid", "tok-bob", "tok-inactive"} {
		state, err := checker.Authorize(context.Background(), token, admins, tokenchecker.AuthorizeOptions{})
		var tcErr *tokenchecker.Error
		switch {
		case err == nil:
			fmt.Println(state.Username, "matched", state.Matched)
		case errors.Is(err, tokenchecker.ErrNotAuthorized):
			fmt.Println("not an admin")
		case errors.As(err, &tcErr) && tcErr.Code.IsTokenProblem():
			fmt.Println("bad token:", tcErr.Code)
		default:
			log.Fatal(err)
		}
	}
	// Output:
	// alice@example.org matched urn:globus:groups:id:22222222-2222-4222-8222-222222222222
	// not an admin
	// bad token: TC_INACTIVE_TOKEN
}

func ExampleChecker_AuthorizePolicy() {
	checker, err := tokenchecker.New(tokenchecker.Config{
		ClientID:       "test-client",
		ClientSecret:   "test-secret",
		ExpectedScopes: []string{"urn:globus:auth:scope:test:all"},
		AuthURL:        fake.URL,
		GroupsURL:      fake.URL,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()

	// Compiled once (at start-up, say), used by every request.
	admins, err := tokenchecker.NewPolicy([]string{
		tokenchecker.GroupPrincipal("22222222-2222-4222-8222-222222222222"),
	}, tokenchecker.AuthorizeOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer admins.Close()

	for _, token := range []string{"tok-valid", "tok-bob"} {
		state, info, err := checker.AuthorizePolicy(context.Background(), token, admins)
		switch {
		case err == nil:
			fmt.Println(state.Username, "matched", info.Matched)
		case errors.Is(err, tokenchecker.ErrNotAuthorized):
			fmt.Println("not an admin")
		default:
			log.Fatal(err)
		}
	}
	// Output:
	// alice@example.org matched urn:globus:groups:id:22222222-2222-4222-8222-222222222222
	// not an admin
}

func ExampleChecker_Derive() {
	checker, err := tokenchecker.New(tokenchecker.Config{
		ClientID:       "test-client",
		ClientSecret:   "test-secret",
		ExpectedScopes: []string{"urn:globus:auth:scope:test:all"},
		AuthURL:        fake.URL,
		GroupsURL:      fake.URL,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer checker.Close()

	// A route that wants another scope: the same client, connections and cache.
	other, err := checker.Derive(tokenchecker.Rules{ExpectedScopes: []string{"urn:globus:auth:scope:other:all"}})
	if err != nil {
		log.Fatal(err)
	}
	defer other.Close()

	for _, c := range []*tokenchecker.Checker{checker, other} {
		_, err := c.Check(context.Background(), "tok-wrong-scope") // one introspection for both
		fmt.Println(c.ExpectedScopes(), errors.Is(err, tokenchecker.ErrInsufficientScope))
	}
	// Output:
	// [urn:globus:auth:scope:test:all] true
	// [urn:globus:auth:scope:other:all] false
}
