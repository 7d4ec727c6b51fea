using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;

namespace VmState.Cli.Web;

/// <summary>
/// A page or fragment being written: markup is added as it is, every other string through <see cref="HtmlEncoder"/>
/// (guest strings — process names, log lines, file names — are hostile and never reach the page unescaped).
/// </summary>
internal sealed class Html
{
    private readonly StringBuilder _sb = new(16 << 10);

    /// <summary>Adds markup written by the server (never guest or client text).</summary>
    public Html Raw(string markup)
    {
        _sb.Append(markup);
        return this;
    }

    /// <summary>Adds text, HTML-encoded.</summary>
    public Html Text(string? text)
    {
        if (!string.IsNullOrEmpty(text))
        {
            HtmlEncoder.Default.Encode(new StringWriter(_sb, CultureInfo.InvariantCulture), text);
        }

        return this;
    }

    /// <summary>Adds a number.</summary>
    public Html Number(long value)
    {
        _sb.Append(value.ToString(CultureInfo.InvariantCulture));
        return this;
    }

    /// <summary>Adds <c>0x</c> and the value in hex.</summary>
    public Html Hex(ulong value)
    {
        _sb.Append("0x").Append(value.ToString("x", CultureInfo.InvariantCulture));
        return this;
    }

    /// <summary>Adds an element with encoded text: <c>&lt;tag&gt;text&lt;/tag&gt;</c>.</summary>
    public Html Element(string tag, string? text, string? cssClass = null)
    {
        _sb.Append('<').Append(tag);
        if (cssClass is not null)
        {
            _sb.Append(" class=\"").Append(cssClass).Append('"');
        }

        _sb.Append('>');
        Text(text);
        _sb.Append("</").Append(tag).Append('>');
        return this;
    }

    /// <summary>Adds a table cell with encoded text.</summary>
    public Html Cell(string? text, string? cssClass = null) => Element("td", text, cssClass);

    /// <summary>Adds a link whose URL is built by the server and whose text is encoded.</summary>
    public Html Link(string url, string? text)
    {
        _sb.Append("<a href=\"");
        Text(url);
        _sb.Append("\">");
        Text(text);
        _sb.Append("</a>");
        return this;
    }

    /// <summary>The markup so far.</summary>
    public override string ToString() => _sb.ToString();

    /// <summary>A value for an attribute or a query string: encoded for a URL component.</summary>
    public static string Url(string value) => Uri.EscapeDataString(value);
}
