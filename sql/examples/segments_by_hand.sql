-- RFM by hand on the CDNOW purchase log: metrics per customer, scores over all
-- customers, and the default segment map; then customers and revenue per segment.
-- rfm sql -t cdnow=data/cdnow/cdnow_master.parquet -f sql/examples/segments_by_hand.sql
WITH metrics AS (
  SELECT customer_id, rfm_metrics(order_date, amount, DATE '1998-07-01') AS m
  FROM cdnow
  GROUP BY customer_id
), scored AS (
  SELECT customer_id, m.recency_days AS recency_days, m.frequency AS frequency,
         m.monetary AS monetary,
         rfm_score(m.recency_days, m.frequency, m.monetary) OVER () AS s
  FROM metrics
)
SELECT rfm_segment(s.r, s.f, s.m) AS segment,
       count(*) AS customers,
       round(sum(monetary), 2) AS revenue,
       round(avg(recency_days), 1) AS mean_recency_days,
       round(avg(frequency), 2) AS mean_frequency
FROM scored
GROUP BY 1
ORDER BY revenue DESC;
