-- Offline evaluation of next_best_offer on the grocery panel: rules and RFM
-- segments learnt up to 2017-09-24 (the end of week 39), k = 3 offers per
-- household, judged on what each household bought afterwards, against a
-- popularity baseline (the top sellers the household does not own) judged the
-- same way, on the same households (those with purchases before and after).
-- A third row, 'hindsight top sellers', is no method: it ranks the products by
-- how many judged households bought them for the first time after the cut,
-- which no list made at the cut can know. It bounds what any one list shared
-- by all households (popularity, trends, seasons) could reach.
-- scripts/evaluate_offers.sh runs it on the full panel; on the repo sample:
-- rfm sql -t grocery=data/completejourney/transactions.parquet \
--         -t products=data/completejourney/products.parquet -f sql/examples/evaluate_offers.sql
CREATE VIEW offers AS
SELECT customer_id, product_id
FROM next_best_offer('grocery', 'products', '2017-09-24',
  'customer=household_id, ts=transaction_timestamp, amount=sales_value, quantity=quantity,
   category=product_category, k=3');

CREATE VIEW before_cut AS
SELECT household_id AS customer_id, product_id, basket_id FROM grocery
WHERE CAST(transaction_timestamp AS DATE) <= DATE '2017-09-24' AND sales_value >= 0;

CREATE VIEW after_cut AS
SELECT DISTINCT household_id AS customer_id, product_id FROM grocery
WHERE CAST(transaction_timestamp AS DATE) > DATE '2017-09-24' AND sales_value >= 0;

CREATE VIEW judged AS
SELECT DISTINCT customer_id FROM before_cut
WHERE customer_id IN (SELECT customer_id FROM after_cut);

CREATE VIEW owned AS SELECT DISTINCT customer_id, product_id FROM before_cut;

-- Lists shared by every household, each offered as its top 3 products the
-- household does not own.
CREATE VIEW shared_lists AS
SELECT 'popularity baseline' AS method, product_id, weight FROM (
  SELECT product_id, count(DISTINCT basket_id) AS weight FROM before_cut
  GROUP BY product_id ORDER BY weight DESC, product_id LIMIT 200)
UNION ALL
SELECT 'hindsight top sellers', product_id, weight FROM (
  SELECT a.product_id, count(*) AS weight FROM after_cut a
  LEFT JOIN owned o ON o.customer_id = a.customer_id AND o.product_id = a.product_id
  WHERE o.product_id IS NULL AND a.customer_id IN (SELECT customer_id FROM judged)
  GROUP BY a.product_id ORDER BY weight DESC, a.product_id LIMIT 200);

CREATE VIEW shared_offers AS
SELECT method, customer_id, product_id FROM (
  SELECT l.method, j.customer_id, l.product_id,
         row_number() OVER (PARTITION BY l.method, j.customer_id
                            ORDER BY l.weight DESC, l.product_id) AS rank
  FROM judged j CROSS JOIN shared_lists l
  LEFT JOIN owned o ON o.customer_id = j.customer_id AND o.product_id = l.product_id
  WHERE o.product_id IS NULL)
WHERE rank <= 3;

WITH offered AS (
  SELECT 'next_best_offer' AS method, customer_id, product_id FROM offers
  WHERE customer_id IN (SELECT customer_id FROM judged)
  UNION ALL
  SELECT method, customer_id, product_id FROM shared_offers),
marked AS (
  SELECT o.method, o.customer_id, o.product_id, a.product_id IS NOT NULL AS hit
  FROM offered o
  LEFT JOIN after_cut a ON a.customer_id = o.customer_id AND a.product_id = o.product_id)
SELECT method,
       count(DISTINCT customer_id) AS households,
       round(CAST(count(DISTINCT CASE WHEN hit THEN customer_id END) AS DOUBLE)
             / count(DISTINCT customer_id), 4) AS hit_rate_at_3,
       round(CAST(sum(CASE WHEN hit THEN 1 ELSE 0 END) AS DOUBLE)
             / (3 * count(DISTINCT customer_id)), 4) AS precision_at_3,
       round(CAST(count(DISTINCT product_id) AS DOUBLE)
             / (SELECT count(*) FROM products), 4) AS coverage
FROM marked
GROUP BY method
ORDER BY method;
