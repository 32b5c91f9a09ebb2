package proxy

import (
	"reflect"
	"testing"

	"github.com/masqroute/masqroute/engine"
)

// addRouterStats must sum every field: a field added to engine.Stats and
// forgotten in addRouterStats would silently vanish from the proxy's totals.
func TestAddRouterStatsCoversEveryField(t *testing.T) {
	var one engine.Stats
	v := reflect.ValueOf(&one).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Uint64:
			f.SetUint(1)
		case reflect.Int64:
			f.SetInt(1)
		default:
			t.Fatalf("Stats.%s has kind %s; teach addRouterStats and this test about it", v.Type().Field(i).Name, f.Kind())
		}
	}
	var sum engine.Stats
	addRouterStats(&sum, one)
	addRouterStats(&sum, one)
	s := reflect.ValueOf(sum)
	for i := range s.NumField() {
		f := s.Field(i)
		if (f.Kind() == reflect.Uint64 && f.Uint() != 2) || (f.Kind() == reflect.Int64 && f.Int() != 2) {
			t.Errorf("addRouterStats does not sum %s", s.Type().Field(i).Name)
		}
	}
}
