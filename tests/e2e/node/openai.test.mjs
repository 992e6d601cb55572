// The openai Node SDK against the gateway binary (GATEWAY_URL, GATEWAY_KEY), in front of the fake
// OpenAI and Claude-on-Bedrock upstreams: chat (complete, streamed, tools), embeddings, responses.
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.GATEWAY_URL}/v1`,
  apiKey: process.env.GATEWAY_KEY,
  maxRetries: 0,
  timeout: 20_000,
});
const CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0";
const weather = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
};

for (const model of ["gpt-4o", CLAUDE]) {
  test(`chat complete and streamed: ${model}`, async () => {
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "hello node" }],
    });
    assert.match(r.choices[0].message.content, /hello node/);
    assert.equal(r.choices[0].finish_reason, "stop");
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "stream node" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.match(text, /stream node/);
    assert.ok(usage.total_tokens > 0);
  });

  test(`chat tool calls, complete and streamed: ${model}`, async () => {
    const tools = [{ type: "function", function: { name: "get_weather", parameters: weather } }];
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "weather in Paris?" }],
      tools,
    });
    const call = r.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, "get_weather");
    assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
    const runner = client.chat.completions.stream({
      model,
      messages: [{ role: "user", content: "weather in Paris?" }],
      tools,
    });
    const final = await runner.finalChatCompletion();
    const streamed = final.choices[0].message.tool_calls[0];
    assert.equal(streamed.function.name, "get_weather");
    assert.deepEqual(JSON.parse(streamed.function.arguments), { city: "Paris" });
  });

  test(`responses create, stream and a tool loop: ${model}`, async () => {
    const r = await client.responses.create({ model, input: "hi responses" });
    assert.equal(r.status, "completed");
    assert.match(r.output_text, /hi responses/);
    const got = await client.responses.retrieve(r.id);
    assert.equal(got.output_text, r.output_text);

    const stream = client.responses.stream({ model, input: "stream responses" });
    let text = "";
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
    }
    const final = await stream.finalResponse();
    assert.equal(final.output_text, text);
    assert.match(text, /stream responses/);

    const tools = [{ type: "function", name: "get_weather", parameters: weather, strict: false }];
    const first = await client.responses.create({ model, input: "weather in Paris?", tools });
    const call = first.output.find((i) => i.type === "function_call");
    assert.deepEqual(JSON.parse(call.arguments), { city: "Paris" });
    const second = await client.responses.create({
      model,
      tools,
      previous_response_id: first.id,
      input: [{ type: "function_call_output", call_id: call.call_id, output: "sunny" }],
    });
    assert.equal(second.status, "completed");
    await client.responses.delete(r.id);
  });
}

for (const [model, dims] of [
  ["text-embedding-3-small", 8],
  ["amazon.titan-embed-text-v2:0", 1024],
  ["cohere.embed-english-v3", 1024],
]) {
  test(`embeddings: ${model}`, async () => {
    // The SDK asks for base64 and decodes it itself.
    const r = await client.embeddings.create({ model, input: ["node", "sdk!"] });
    assert.equal(r.data.length, 2);
    assert.equal(r.data[0].embedding.length, dims);
    assert.equal(r.data[0].embedding[0], 4);
    assert.equal(r.data[1].embedding[0], 4);
    assert.ok(Math.abs(r.data[1].embedding[1] - 0.001) < 1e-6);
    assert.ok(r.usage.total_tokens > 0);
  });
}
