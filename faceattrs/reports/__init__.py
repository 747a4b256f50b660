"""What the stages report: Markdown tables, pictures, and the one page linking them."""
