-- What a segment map does with every score cell: rules that never win, overlaps
-- settled by rule order, and cells left to the fallback name.
-- rfm sql -f sql/examples/segment_check.sql
SELECT kind, segment, cells, detail
FROM rfm_segment_check('Loyal: r2-5 f3-5 m3-5; Champions: r4-5 f4-5 m4-5');
