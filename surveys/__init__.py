"""CES + CSAT micro-survey at close, manager reports and exports.

flow.py asks the questions (called by the engine at close and for messages in SURVEY);
answers.py reads typed and clicked answers; store.py is the survey table's repository;
sweeper.py expires surveys and resolves silent bot chats; kpis.py/reports.py compute the
managers' figures; export.py writes CSV/XLSX; demo.py fills a database with synthetic data;
web.py serves the dashboard and its JSON.
"""
