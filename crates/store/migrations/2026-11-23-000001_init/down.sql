DROP TABLE pool_item_images;
DROP TABLE pool_items;
DROP TABLE design_images;
DROP TABLE designs;
DROP TABLE template_images;
DROP TABLE templates;
DROP TABLE api_keys;
DROP TABLE companies;
