-- Freeze the cut points of one scoring and score a later batch against them.
-- rfm sql -t cdnow=data/cdnow/cdnow_master.parquet -f sql/examples/freeze_thresholds.sql
CREATE TABLE h1 AS
SELECT customer_id, m.recency_days AS r, m.frequency AS f, m.monetary AS m
FROM (SELECT customer_id, rfm_metrics(order_date, amount, DATE '1997-07-01') AS m
      FROM cdnow GROUP BY customer_id);

-- The thresholds behind the quantile scores of the first half of 1997.
CREATE TABLE frozen AS SELECT rfm_thresholds(r, f, m) AS thresholds FROM h1;
SELECT thresholds FROM frozen;

-- A year later, the same customers scored against the frozen thresholds.
SELECT s.code AS rfm_code, count(*) AS customers
FROM (SELECT rfm_score_fixed(m.recency_days, m.frequency, m.monetary, thresholds) AS s
      FROM (SELECT customer_id, rfm_metrics(order_date, amount, DATE '1998-07-01') AS m
            FROM cdnow GROUP BY customer_id)
      CROSS JOIN frozen)
GROUP BY 1 ORDER BY customers DESC LIMIT 5;
