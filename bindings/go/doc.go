// Package tokenchecker checks OAuth2 bearer tokens of Globus Auth for resource servers, with
// the tokenchecker library's C ABI (include/tokenchecker.h) under cgo.
//
// A Checker introspects tokens, applies every rule (active, validity window, expected scopes
// and audience, identity set) on every call, caches answers process-wide, and coalesces
// concurrent checks of one token into one request:
//
//	checker, err := tokenchecker.New(tokenchecker.Config{
//		ClientID:       os.Getenv("TC_CLIENT_ID"),
//		ClientSecret:   os.Getenv("TC_CLIENT_SECRET"),
//		ExpectedScopes: []string{"https://auth.globus.org/scopes/…/all"},
//	})
//	if err != nil { … }
//	defer checker.Close()
//	http.Handle("/api/", checker.Middleware(api)) // 401/403/503 for the caller, AuthState for api
//
// Cached tokens are answered at once; otherwise calls wait for the library's threads or their
// context. Errors are *Error values. Building needs the native library: by default an installed
// copy found through pkg-config, -tags tokenchecker_static its static library, -tags
// tokenchecker_intree the build of the checkout this module sits in (README.md).
package tokenchecker
