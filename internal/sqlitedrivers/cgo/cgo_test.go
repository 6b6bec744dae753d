package cgo

import (
	"database/sql"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/sluice-dev/sluice/internal/sqlitedrivers"
)

// BenchmarkLoad: the same load through mattn/go-sqlite3 (cgo, SQLite
// compiled natively), the published fastest.
func BenchmarkLoad(b *testing.B) {
	rows := sqlitedrivers.Rows(1_000_000)
	b.Run("mattn", func(b *testing.B) {
		sqlitedrivers.Load(b, func(dir string) (*sql.DB, error) {
			return sql.Open("sqlite3", "file:"+filepath.Join(dir, "sales.db")+"?_journal_mode=WAL&_synchronous=NORMAL")
		}, rows)
	})
}
