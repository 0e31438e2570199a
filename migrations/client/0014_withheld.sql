-- Grants on coordination (issue 17 item 7): the broker's grants generation
-- the last withheld change of this feed came with (NULL: none withheld
-- since the last full sync). When a page's generation differs, the device
-- syncs the feed again from the start, so what a changed grant lets
-- through arrives.
ALTER TABLE coord_heads ADD COLUMN withheld_grants INTEGER;
