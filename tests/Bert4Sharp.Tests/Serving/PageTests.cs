namespace Bert4Sharp.Tests.Serving;

using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Playwright;

/// <summary>
/// The web page end to end in headless Chromium (Debian's <c>/usr/bin/chromium</c>, which .ci/run installs; Playwright
/// never downloads a browser here): type, click, wait for streamed text, and check what a person sees. The screenshot
/// is kept as a test artefact (<c>TestResults/serve-page.png</c> under the test output).
/// </summary>
[Collection("serving")]
public sealed class PageTests(ServerFixture f)
{
    const string Chromium = "/usr/bin/chromium";

    [Fact]
    public async Task A_person_compares_sentences_fills_a_mask_and_watches_generation_stream()
    {
        if (!File.Exists(Chromium)) Assert.Skip($"{Chromium} is not installed (Debian package chromium; .ci/run installs it)");
        var ct = TestContext.Current.CancellationToken;
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = Chromium, Headless = true, Args = ["--no-sandbox"] });
        var page = await browser.NewPageAsync();
        await page.GotoAsync(f.BaseUrl + "/");
        await Assertions.Expect(page.Locator("#models")).ToContainTextAsync("minilm (embedding, onnx)");

        // Similarity: the two cat sentences are the closest pair, and a sentence is identical to itself.
        await page.ClickAsync("#compare");
        var table = page.Locator("#similarity");
        await Assertions.Expect(table).ToBeVisibleAsync();
        double Cell(IReadOnlyList<string> row, int j) => double.Parse(row[j + 1], System.Globalization.CultureInfo.InvariantCulture);
        var rows = new List<IReadOnlyList<string>>();
        for (int i = 1; i <= 3; i++) rows.Add(await table.Locator("tr").Nth(i).Locator("td").AllInnerTextsAsync());
        Assert.Equal(1.0, Cell(rows[0], 0), 3);
        Assert.True(Cell(rows[0], 1) > Cell(rows[0], 2) + 0.2, $"cat/cat {Cell(rows[0], 1)} vs cat/markets {Cell(rows[0], 2)}");
        Assert.Equal("high", await table.Locator("tr").Nth(1).Locator("td").Nth(2).GetAttributeAsync("class"));

        // Fill-mask with the model that has an MLM head.
        await page.FillAsync("#mask-text", "一[MASK]三");
        await page.ClickAsync("#fill");
        await Assertions.Expect(page.Locator("#candidates li")).ToHaveCountAsync(5);
        Assert.Matches(@"^\S+\s+\d+\.\d %\s+— 一.三$", await page.Locator("#candidates li").First.InnerTextAsync());

        // Named entities: every highlighted span is one the API found, with its type.
        await page.ClickAsync("#recognize");
        await Assertions.Expect(page.Locator("#entities mark").First).ToBeVisibleAsync();
        string nerText = await page.InputValueAsync("#ner-text");
        using (var ner = await f.Http.PostAsJsonAsync("/v1/ner", new { model = "ner", input = nerText }, ct))
        {
            var found = JsonDocument.Parse(await ner.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("data")[0].GetProperty("entities").EnumerateArray()
                .Select(e => (e.GetProperty("text").GetString(), e.GetProperty("type").GetString())).ToHashSet();
            var marks = page.Locator("#entities mark");
            for (int i = 0; i < await marks.CountAsync(); i++)
                Assert.Contains((await marks.Nth(i).InnerTextAsync(), await marks.Nth(i).GetAttributeAsync("data-type")), found);
            Assert.Equal(nerText, await page.Locator("#entities").TextContentAsync());          // the text itself is all there
        }

        // Generation: greedy text equal to the API's, finished; then a long one seen mid-stream and stopped by the person.
        using var response = await f.Http.PostAsJsonAsync("/v1/completions", new { model = "gpt", prompt = "二", max_tokens = 24, temperature = 0 }, ct);
        string expected = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct)).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
        await page.SelectOptionAsync("#generation-model", "gpt");
        await page.FillAsync("#prompt", "二");
        await page.FillAsync("#max-tokens", "24");
        await page.ClickAsync("#generate");
        await Assertions.Expect(page.Locator("#finish")).ToContainTextAsync("finished: length");
        Assert.Equal(expected, await page.Locator("#output").InnerTextAsync());

        await page.SelectOptionAsync("#generation-model", "gpt-slow");
        await page.FillAsync("#max-tokens", "2000");
        await page.ClickAsync("#generate");
        await page.WaitForFunctionAsync("() => document.getElementById('output').textContent.length >= 5");
        Assert.Equal("", await page.Locator("#finish").InnerTextAsync());                      // text is arriving before the end
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(AppContext.BaseDirectory, "TestResults", "serve-page.png"), FullPage = true });
        await page.ClickAsync("#stop");
        await Assertions.Expect(page.Locator("#finish")).ToHaveTextAsync("stopped");
        Assert.Equal("", await page.Locator("#error").InnerTextAsync());
        Assert.True(new FileInfo(Path.Combine(AppContext.BaseDirectory, "TestResults", "serve-page.png")).Length > 10_000);
    }
}
