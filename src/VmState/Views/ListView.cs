using System.Text;

namespace VmState.Views;

/// <summary>
/// How a list of rows (processes, modules, network devices, mappings, log records, symbols) is shown: the named,
/// typed <see cref="Fields"/> of each row in their order (machine-readable output), and the <see cref="Columns"/> of
/// a text table. Renderers (the CLI's table and JSON, a web UI, a FUSE view) take both from here, so every front
/// end shows the same fields under the same names.
/// </summary>
/// <typeparam name="T">The row type.</typeparam>
public sealed class ListView<T>
{
    /// <summary>A view with <paramref name="fields"/> and the text table <paramref name="columns"/>.</summary>
    /// <exception cref="ArgumentException">Two fields have the same name.</exception>
    public ListView(IReadOnlyList<ListField<T>> fields, IReadOnlyList<ListColumn<T>> columns)
    {
        ArgumentNullException.ThrowIfNull(fields);
        ArgumentNullException.ThrowIfNull(columns);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (ListField<T> f in fields)
        {
            if (!names.Add(f.Name))
            {
                throw new ArgumentException($"two fields are named '{f.Name}'", nameof(fields));
            }
        }

        Fields = fields;
        Columns = columns;
    }

    /// <summary>The fields of a row, in order.</summary>
    public IReadOnlyList<ListField<T>> Fields { get; }

    /// <summary>The columns of the text table, in order.</summary>
    public IReadOnlyList<ListColumn<T>> Columns { get; }

    /// <summary>True when the text table has a header line (a column has a title).</summary>
    public bool HasHeader => Columns.Any(c => c.Title is not null);

    /// <summary>The header line of the text table (without a newline), or null when no column has a title.</summary>
    public string? FormatHeader() => HasHeader ? Join(c => c.Title ?? string.Empty) : null;

    /// <summary>The line of the text table for <paramref name="row"/> (without a newline).</summary>
    public string FormatRow(T row) => Join(c => c.Text(row));

    /// <summary>The field named <paramref name="name"/>, or null.</summary>
    public ListField<T>? Field(string name) => Fields.FirstOrDefault(f => f.Name == name);

    private string Join(Func<ListColumn<T>, string> cell)
    {
        var line = new StringBuilder();
        for (int i = 0; i < Columns.Count; i++)
        {
            if (i > 0)
            {
                line.Append(' ');
            }

            // .NET's composite-format alignment: pad to |Width|, on the left when positive, never truncate.
            ListColumn<T> c = Columns[i];
            string text = cell(c);
            int pad = Math.Abs(c.Width) - text.Length;
            if (pad > 0 && c.Width > 0)
            {
                line.Append(' ', pad);
            }

            line.Append(text);
            if (pad > 0 && c.Width < 0)
            {
                line.Append(' ', pad);
            }
        }

        return line.ToString();
    }
}
