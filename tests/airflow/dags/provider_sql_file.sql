-- a multi-statement SQL file, rendered as a template
CREATE TABLE IF NOT EXISTS public.jobmon_sql_file (id int);
INSERT INTO public.jobmon_sql_file SELECT g FROM generate_series(1, {{ params.rows }}) g;
DELETE FROM public.jobmon_sql_file WHERE id > 3;
