package purego

import (
	"database/sql"
	"strings"
	"testing"

	_ "github.com/ncruces/go-sqlite3/driver"
	_ "modernc.org/sqlite"

	"github.com/sluice-dev/sluice/internal/sqlitedrivers"
)

// BenchmarkLoad: 1M rows upserted in one transaction by the two pure-Go
// drivers, side by side: ncruces (the agent's) and modernc.
func BenchmarkLoad(b *testing.B) {
	rows := sqlitedrivers.Rows(1_000_000)
	for _, d := range []struct{ name, driver string }{{"ncruces", "sqlite3"}, {"modernc", "sqlite"}} {
		b.Run(d.name, func(b *testing.B) {
			sqlitedrivers.Load(b, func(dir string) (*sql.DB, error) { return sql.Open(d.driver, sqlitedrivers.DSN(dir)) }, rows)
		})
	}
}

// BenchmarkWithoutRowid: the agent's driver on the same load into a
// WITHOUT ROWID table, whose primary key is the table's own B-tree rather
// than a second index beside it: the schema's share of the load's cost.
func BenchmarkWithoutRowid(b *testing.B) {
	rows := sqlitedrivers.Rows(1_000_000)
	schema := strings.Replace(sqlitedrivers.Schema, "line))", "line)) WITHOUT ROWID", 1)
	if schema == sqlitedrivers.Schema {
		b.Fatal("the schema no longer ends its primary key as this benchmark expects")
	}
	b.Run("ncruces", func(b *testing.B) {
		sqlitedrivers.LoadSchema(b, func(dir string) (*sql.DB, error) { return sql.Open("sqlite3", sqlitedrivers.DSN(dir)) }, rows, schema)
	})
}
