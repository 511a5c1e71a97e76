-- Every household of the grocery panel scored and segmented in one call, as of
-- the end of September 2017, with baskets as orders.
-- rfm sql -t grocery=data/completejourney/transactions.parquet -f sql/examples/one_call.sql
SELECT segment, count(*) AS households, round(avg(monetary), 2) AS mean_spend
FROM rfm_customers('grocery', 'household_id', 'transaction_timestamp', 'sales_value',
                   '2017-09-30', 'order_id=basket_id')
GROUP BY segment
ORDER BY households DESC, segment;
