// Command dag is the builtin `dag` plugin: the per-row features of the
// seed's Airflow DAG (transform_data), for the source its config names.
//
//	source: user_behavior    engagement_score = page_views * 0.3 +
//	                         session_duration * 0.7 (absent if either is
//	                         missing, as pandas' NaN); is_active_user =
//	                         engagement_score > median_engagement, false
//	                         where either is missing (pandas compares NaN
//	                         as false)
//	source: product_catalog  price_category: pandas' cut of price into
//	                         (0, 50] budget, (50, 200] mid-range,
//	                         (200, 1000] premium; absent outside them
//
// The median is the batch's, which a plugin call cannot see (a batch is
// cut into calls), so the DAG's pipeline puts it beside each row with
// `aggregate` (`annotate: true`) between two runs of this step: the first
// writes engagement_score (and is_active_user false, as no row has a
// median yet), the second, with the median there, is_active_user.
// pipelines/ml_dag.yaml shows it. transaction_history's features are the
// `transform` builtin's.
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o dag.wasm .
package main

import (
	"fmt"

	"github.com/sluice-dev/sluice/plugins/sdk"
)

// Guest state is set once, by the config, before any batch.
var (
	handle func(b *sdk.Batch)

	pageViews, sessionDuration, median, price sdk.InFloat
	engagement                                sdk.OutFloat
	active                                    sdk.OutBool
	category                                  sdk.OutString
)

type config struct {
	Source string `json:"source"`
}

func init() {
	sdk.OnConfig(func(c sdk.Config) error {
		var cfg config
		if err := c.Decode(&cfg); err != nil {
			return err
		}
		switch cfg.Source {
		case "user_behavior":
			pageViews, sessionDuration = sdk.ReadFloat("page_views"), sdk.ReadFloat("session_duration")
			median = sdk.ReadFloat("median_engagement")
			engagement, active = sdk.WriteFloat("engagement_score"), sdk.WriteBool("is_active_user")
			handle = userBehavior
		case "product_catalog":
			price = sdk.ReadFloat("price")
			category = sdk.WriteString("price_category")
			handle = productCatalog
		default:
			return sdk.InvalidConfig(fmt.Errorf("config: source: %q is not user_behavior or product_catalog (transaction_history's features are the transform builtin's)", cfg.Source))
		}
		return nil
	})
	sdk.HandleBatch(func(b *sdk.Batch) error {
		handle(b)
		return nil
	})
}

func userBehavior(b *sdk.Batch) {
	for i := range b.Len() {
		views, ok1 := pageViews.Get(b, i)
		secs, ok2 := sessionDuration.Get(b, i)
		if !ok1 || !ok2 {
			active.Set(b, i, false)
			continue
		}
		score := views*0.3 + secs*0.7
		engagement.Set(b, i, score)
		m, ok := median.Get(b, i)
		active.Set(b, i, ok && score > m)
	}
}

var (
	budget   = []byte("budget")
	midRange = []byte("mid-range")
	premium  = []byte("premium")
)

func productCatalog(b *sdk.Batch) {
	for i := range b.Len() {
		p, ok := price.Get(b, i)
		switch {
		case !ok || !(p > 0) || p > 1000:
		case p <= 50:
			category.Set(b, i, budget)
		case p <= 200:
			category.Set(b, i, midRange)
		default:
			category.Set(b, i, premium)
		}
	}
}

func main() {}
