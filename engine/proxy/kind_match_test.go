package proxy

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/masqroute/masqroute/engine"
)

type matcherFunc func(*http.Request) (map[string]string, error)

func (matcherFunc) Start(context.Context, *engine.Session, engine.Args) (engine.Handler, error) {
	return nil, errors.New("not started in this test")
}
func (f matcherFunc) MatchRequest(r *http.Request) (map[string]string, error) { return f(r) }

// Every kind's request gets its Vars: a TemplateKind's from its template, a
// RequestMatcher's from its answer, and an empty map for a kind that
// matches no template. Refusals keep their status, or answer 404.
func TestKindMatching(t *testing.T) {
	plain := engine.KindFunc(func(context.Context, *engine.Session, engine.Args) (engine.Handler, error) { return nil, nil })
	tk, err := TemplateKind("https://{authority}/greet/{greeting}/", plain)
	require.NoError(t, err)
	_, err = TemplateKind("not a template", plain)
	require.Error(t, err)

	match := func(k engine.Kind, uri string) (*Request, error) {
		r, err := http.NewRequest(http.MethodConnect, "https://proxy.test"+uri, nil)
		require.NoError(t, err)
		r.RequestURI = uri
		req := &Request{HTTP: r}
		return req, wrapKind(k, nil).match(req)
	}
	req, err := match(plain, "/anything")
	require.NoError(t, err)
	require.NotNil(t, req.Vars)
	require.Empty(t, req.Vars)

	req, err = match(tk, "/greet/hi%21/")
	require.NoError(t, err)
	require.Equal(t, "hi!", req.Vars["greeting"])

	_, err = match(tk, "/other/")
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusNotFound, se.Status)

	_, err = match(matcherFunc(func(*http.Request) (map[string]string, error) { return nil, errors.New("no") }), "/")
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusNotFound, se.Status)
	_, err = match(matcherFunc(func(*http.Request) (map[string]string, error) {
		return nil, &StatusError{Status: http.StatusForbidden}
	}), "/")
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusForbidden, se.Status)
	req, err = match(matcherFunc(func(*http.Request) (map[string]string, error) { return nil, nil }), "/")
	require.NoError(t, err)
	require.NotNil(t, req.Vars)
}
